"""Offline router study on LaRA's published predictions: no LLM is run.

Each question is routed with features known at question time; the published answer of
the chosen mode is looked up and judged. Everything learned (question-type classifier,
the model's long-context strength, the policy and its thresholds) is fitted on training
documents only: folds are grouped by document, and each question is scored once, by the
fold that held its document out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.refusals import is_refusal
from app.routing.qtype import QTypePrediction, QuestionTypeClassifier, train_qtype
from app.routing.router import (
    LinearScore,
    ModelProfile,
    RetrievalEvidence,
    after_features,
    digit_share,
    policy_features,
)
from eval.lara import TASKS, PaperRow, Question
from pipeline.errors import import_extra

# Parameter counts (billions) of the open models behind the prediction folders.
PARAMS_B = {
    "llama-3.1-8b": 8.0,
    "llama-3.2-3b": 3.0,
    "llama-3.3-70b": 70.0,
    "llama-3.3-70b-turbo": 70.0,
    "qwen2.5-7b-instruct": 7.0,
    "qwen2.5-72b-instruct": 72.0,
    "mistral-nemo": 12.0,
}
RAG_PROMPT_TOKENS = 5 * 600 + 100  # LaRA's RAG baseline: 5 chunks of 600 tokens, plus instructions
LC_OVERHEAD_TOKENS = 100


@dataclass(frozen=True)
class DocInfo:
    tokens: int
    digit_share: float


@dataclass(frozen=True)
class Case:
    """One question for one model: both published answers judged, features known at question time."""

    model: str
    q: Question
    lc_ok: bool
    rag_ok: bool
    rag_refused: bool
    rag_answer: str
    doc: DocInfo
    retrieval: RetrievalEvidence | None

    @property
    def lc_tokens(self) -> int:
        return self.doc.tokens + LC_OVERHEAD_TOKENS

    @property
    def rag_tokens(self) -> int:
        return min(RAG_PROMPT_TOKENS, self.lc_tokens)


@dataclass(frozen=True)
class Choice:
    """What a policy did with one case: the answer used and the prompt tokens it cost."""

    mode: str  # "lc", "rag" or "rag>lc" (Self-Route fallback)
    correct: bool
    tokens: int


@dataclass
class PolicyResult:
    name: str
    choices: dict[str, list[tuple[Case, Choice]]] = field(default_factory=dict)  # model -> [(case, choice)]

    def add(self, case: Case, choice: Choice) -> None:
        self.choices.setdefault(case.model, []).append((case, choice))

    def accuracy(self, model: str) -> float:
        """Mean of the four task accuracies (%), as in the LaRA paper's 'overall'."""
        per: dict[str, list[int]] = {}
        for case, ch in self.choices[model]:
            per.setdefault(case.q.task, []).append(int(ch.correct))
        accs = [100.0 * sum(v) / len(v) for t, v in per.items() if t in TASKS]
        return sum(accs) / len(accs)

    def task_accuracy(self, model: str, task: str) -> float:
        v = [int(ch.correct) for case, ch in self.choices[model] if case.q.task == task]
        return 100.0 * sum(v) / len(v) if v else float("nan")

    def token_ratio(self, model: str) -> float:
        """Prompt tokens spent relative to always-LC on the same questions."""
        spent = sum(ch.tokens for _, ch in self.choices[model])
        lc = sum(case.lc_tokens for case, _ in self.choices[model])
        return spent / lc

    def lc_share(self, model: str) -> float:
        rows = self.choices[model]
        return sum(ch.mode != "rag" for _, ch in rows) / len(rows)


def pick(case: Case, mode: str, self_route: bool = False, fallback_ok: bool = True) -> Choice:
    if mode == "lc":
        return Choice("lc", case.lc_ok, case.lc_tokens)
    if self_route and case.rag_refused and fallback_ok:
        return Choice("rag>lc", case.lc_ok, case.rag_tokens + case.lc_tokens)
    return Choice("rag", case.rag_ok, case.rag_tokens)


def doc_info(text: str, count_tokens: Callable[[str], int]) -> DocInfo:
    return DocInfo(count_tokens(text), digit_share([text]))


def build_cases(
    questions: Sequence[Question],
    verdicts: Mapping[tuple[str, str, str], bool],
    predictions: Mapping[tuple[str, str, str], str],
    docs: Mapping[str, DocInfo],
    retrieval: Mapping[str, RetrievalEvidence] | None = None,
) -> list[Case]:
    models = sorted({m for m, _, _ in verdicts})
    out = []
    for m in models:
        for q in questions:
            out.append(
                Case(
                    model=m,
                    q=q,
                    lc_ok=verdicts[(m, "lc", q.qid)],
                    rag_ok=verdicts[(m, "rag", q.qid)],
                    rag_refused=is_refusal(predictions[(m, "rag", q.qid)]),
                    rag_answer=predictions[(m, "rag", q.qid)],
                    doc=docs[q.doc_key],
                    retrieval=(retrieval or {}).get(q.qid),
                )
            )
    return out


def measured_profiles(cases: Sequence[Case]) -> dict[str, ModelProfile]:
    """Each model's long-context advantage (LC minus RAG, mean over tasks) on the given cases."""
    out = {}
    for m in sorted({c.model for c in cases}):
        diffs = []
        for t in TASKS:
            cs = [c for c in cases if c.model == m and c.q.task == t]
            if cs:
                diffs.append(sum(c.lc_ok - c.rag_ok for c in cs) / len(cs))
        out[m] = ModelProfile(m, PARAMS_B.get(m), round(sum(diffs) / len(diffs), 4) if diffs else None)
    return out


def default_advantage(profiles: Mapping[str, ModelProfile]) -> dict[str, float]:
    """Mean measured advantage per size class, for models whose strength was never measured."""
    from app.routing.router import size_class

    by: dict[str, list[float]] = {}
    for p in profiles.values():
        if p.lc_advantage is not None:
            by.setdefault(size_class(p.params_b), []).append(p.lc_advantage)
    return {k: round(sum(v) / len(v), 4) for k, v in by.items()}


def before_rows(
    cases: Sequence[Case],
    qtypes: Mapping[str, QTypePrediction],
    profiles: Mapping[str, ModelProfile],
    defaults: Mapping[str, float],
) -> list[dict[str, float]]:
    """Question-time features of each case (the router's own ``policy_features``)."""
    return [
        policy_features(
            qtypes[c.q.qid],
            profiles.get(c.model),
            doc_tokens=c.doc.tokens,
            doc_digit_share=c.doc.digit_share,
            retrieval=c.retrieval,
            cached=False,
            default_lc_advantage=dict(defaults),
        )
        for c in cases
    ]


def matrix(rows: Sequence[dict[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=np.float64)


def fit_lr(x: np.ndarray, cases: Sequence[Case], *, c: float = 1.0, kind: str = "logistic"):
    """Fit P(LC better | LC and RAG disagree) on the cases where they disagree."""
    idx = [i for i, cs in enumerate(cases) if cs.lc_ok != cs.rag_ok]
    y = np.array([int(cases[i].lc_ok) for i in idx])
    if kind == "logistic":
        linear = import_extra("sklearn.linear_model", "eval", "training the router policy", "scikit-learn")
        model = linear.LogisticRegression(C=c, max_iter=5000)
    elif kind == "gbm":
        ensemble = import_extra("sklearn.ensemble", "eval", "training the router policy", "scikit-learn")
        model = ensemble.HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15)
    else:
        raise ValueError(f"unknown policy kind '{kind}'; use logistic or gbm")
    model.fit(x[idx], y)
    return model


def linear(model, names: Sequence[str]) -> LinearScore:
    return LinearScore(tuple(names), tuple(float(v) for v in model.coef_[0]), float(model.intercept_[0]))


def decide(case: Case, s1: float, s2: float, rule: bool, t1: float, t2: float) -> Choice:
    """Two-stage routing: LC before answering, else RAG and maybe a fallback to LC."""
    if s1 >= t1:
        return Choice("lc", case.lc_ok, case.lc_tokens)
    if rule or s2 >= t2:
        return Choice("rag>lc", case.lc_ok, case.rag_tokens + case.lc_tokens)
    return Choice("rag", case.rag_ok, case.rag_tokens)


GRID = tuple(round(float(v), 3) for v in np.arange(0.30, 1.0001, 0.025)) + (1.01,)
# Self-Route rule: fall back after a refusal only when P(unanswerable) is below this limit; the
# limit is chosen per model with the thresholds (0: rule off, 1.01: every refusal falls back).
HALLU_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 1.01)


def choose_thresholds(
    cases: Sequence[Case],
    s1: Sequence[float],
    s2: Sequence[float],
    rules: Sequence[bool],
    budget: float,
) -> tuple[float, float]:
    """The (before, after) thresholds with the best accuracy on these cases (mean over tasks)
    whose prompt tokens stay within ``budget`` x always-LC; ties go to fewer tokens."""
    best = _best_thresholds(cases, s1, s2, {0.5: np.asarray(rules, dtype=bool)}, budget)
    if best is None:  # even the Self-Route rule alone overspends: no learned LC at all
        return 1.01, 1.01
    return best[0], best[1]


def choose_policy(
    cases: Sequence[Case],
    s1: Sequence[float],
    s2: Sequence[float],
    refused: Sequence[bool],
    q_hallu: Sequence[float],
    budget: float,
    hallu_grid: Sequence[float] = HALLU_GRID,
    groups: Sequence[int] | None = None,
) -> tuple[float, float, float]:
    """Like ``choose_thresholds``, and the Self-Route rule's P(unanswerable) limit with them:
    (before threshold, after threshold, max_hallu). With ``groups`` (a group of documents per
    case), the budget must hold within every group, not only over all the cases: thresholds that
    overspend on some documents are likely to overspend on new ones."""
    ref, hal = np.asarray(refused, dtype=bool), np.asarray(q_hallu, dtype=np.float64)
    best = _best_thresholds(cases, s1, s2, {mh: ref & (hal < mh) for mh in hallu_grid}, budget, groups)
    if best is None:  # nothing fits: RAG only, no fallback
        return 1.01, 1.01, 0.0
    return best


def _best_thresholds(
    cases: Sequence[Case],
    s1: Sequence[float],
    s2: Sequence[float],
    rule_sets: Mapping[float, np.ndarray],
    budget: float,
    groups: Sequence[int] | None = None,
) -> tuple[float, float, float] | None:
    a1, a2 = np.asarray(s1), np.asarray(s2)
    lc_ok = np.array([c.lc_ok for c in cases], dtype=np.float64)
    rag_ok = np.array([c.rag_ok for c in cases], dtype=np.float64)
    lc_tok = np.array([c.lc_tokens for c in cases], dtype=np.float64)
    rag_tok = np.array([c.rag_tokens for c in cases], dtype=np.float64)
    tasks = sorted({c.q.task for c in cases})
    # Weight each case by 1 / (questions of its task x tasks): the sum is the mean task accuracy.
    n_task = {t: sum(1 for c in cases if c.q.task == t) for t in tasks}
    w = np.array([1.0 / (n_task[c.q.task] * len(tasks)) for c in cases])
    g = np.zeros(len(cases), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    limits = budget * np.bincount(g, weights=lc_tok)
    best: tuple[float, float, float, float, float] | None = None
    for mh, rule in rule_sets.items():
        for t1 in GRID:
            lc = a1 >= t1
            for t2 in GRID:
                fb = ~lc & (rule | (a2 >= t2))
                cost = np.where(lc, lc_tok, np.where(fb, lc_tok + rag_tok, rag_tok))
                by_group = np.bincount(g, weights=cost, minlength=len(limits))
                if (by_group > limits).any():
                    continue
                spent = float(cost.sum())
                acc = float((w * np.where(lc | fb, lc_ok, rag_ok)).sum())
                if best is None or (acc, -spent) > (best[0], -best[1]):
                    best = (acc, spent, t1, t2, mh)
    return None if best is None else (best[2], best[3], best[4])


def fold_qtypes(
    questions: Sequence[Question], train_ids: set[str]
) -> tuple[QuestionTypeClassifier, dict[str, QTypePrediction]]:
    """Question types from a classifier trained on the training questions only."""
    train = [q for q in questions if q.qid in train_ids]
    clf = train_qtype([q.question for q in train], [q.task for q in train])
    return clf, {q.qid: clf.predict(q.question) for q in questions}


def macro(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


@dataclass
class FoldModel:
    """Everything fitted on one set of training documents."""

    classifier: QuestionTypeClassifier
    qtypes: dict[str, QTypePrediction]
    profiles: dict[str, ModelProfile]
    defaults: dict[str, float]
    before: LinearScore
    after: LinearScore
    fallback_max_hallu: float


def fit_fold(
    questions: Sequence[Question], train: Sequence[Case], *, c: float = 1.0, fallback_max_hallu: float = 0.5
) -> FoldModel:
    train_ids = {cs.q.qid for cs in train}
    classifier, qtypes = fold_qtypes(questions, train_ids)
    profiles = measured_profiles(train)
    defaults = default_advantage(profiles)
    rows = before_rows(train, qtypes, profiles, defaults)
    names1 = [k for k in rows[0] if k != "cached"]
    lr1 = fit_lr(matrix(rows, names1), train, c=c)
    before = linear(lr1, names1)
    rows2 = [after_features(r, before.score(r), cs.rag_answer, cs.q.question) for r, cs in zip(rows, train)]
    names2 = [k for k in rows2[0] if k != "cached"]
    lr2 = fit_lr(matrix(rows2, names2), train, c=c)
    return FoldModel(classifier, qtypes, profiles, defaults, before, linear(lr2, names2), fallback_max_hallu)


def score_cases(fm: FoldModel, cases: Sequence[Case]) -> tuple[list[float], list[float], list[bool]]:
    """Before and after scores, and whether the Self-Route rule fires, for each case."""
    rows = before_rows(cases, fm.qtypes, fm.profiles, fm.defaults)
    s1 = [fm.before.score(r) for r in rows]
    s2 = [
        fm.after.score(after_features(r, a, cs.rag_answer, cs.q.question))
        for r, a, cs in zip(rows, s1, cases)
    ]
    rules = [cs.rag_refused and r["q_hallu"] < fm.fallback_max_hallu for r, cs in zip(rows, cases)]
    return s1, s2, rules


def rule_inputs(fm: FoldModel, cases: Sequence[Case]) -> tuple[list[bool], list[float]]:
    """What the Self-Route rule looks at: whether the RAG answer refused, and P(unanswerable)."""
    return [cs.rag_refused for cs in cases], [fm.qtypes[cs.q.qid].probs["hallu"] for cs in cases]


# -- loading the study ---------------------------------------------------------------------------


def generator_token_counter() -> tuple[str, Callable[[str], int]]:
    """The embedded generator's own tokenizer (vocab only) when available, else ~4 chars a token."""
    try:
        from app.catalog import load_catalog, resolve_generator
        from app.llm.llamacpp import LlamaCppGenerator
        from app.settings import Settings

        spec = load_catalog().generators["qwen2.5-coder-1.5b"]
        llm = LlamaCppGenerator(
            resolve_generator(spec, Settings().model_cache), context_window=512, threads=1
        )
        return "the Qwen2.5 tokenizer", llm.count_tokens
    except Exception:  # noqa: BLE001 - any failure falls back to the estimate
        return "an estimate of 4 characters a token", lambda t: max(1, len(t) // 4)


def load_retrieval(path: Path | None) -> dict[str, RetrievalEvidence]:
    """Retrieval evidence per question id, as written by benchmarks/router_retrieval.py."""
    if path is None or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {qid: RetrievalEvidence(**v) for qid, v in data["evidence"].items()}


@dataclass(frozen=True)
class Study:
    questions: list[Question]
    cases: list[Case]
    paper: list[PaperRow]
    tokenizer: str
    n_retrieval: int


def load_study(
    lara: Path,
    retrieval_cache: Path | None = None,
    *,
    split: str = "32k",
    doc_cache: Path | None = None,
) -> Study:
    """Questions, published answers judged by the deterministic judge, documents measured.
    ``split``: "32k" (``lara`` = ../shared/data/lara) or "128k" (``lara`` = where
    lara-128k.tar.gz was unpacked). ``doc_cache``: a JSON file keeping the documents' token counts
    (tokenising 67 documents of ~100k tokens takes a while)."""
    from eval.judge import DeterministicJudge
    from eval.lara import load_paper_table, load_predictions, load_questions
    from eval.validate import judge_answers

    questions = load_questions(lara, split=split)
    answers = load_predictions(lara, questions=questions, split=split, missing_ok=split != "32k")
    verdicts = judge_answers(DeterministicJudge(), questions, answers)
    cached: dict = {}
    if doc_cache is not None and Path(doc_cache).is_file():
        cached = json.loads(Path(doc_cache).read_text(encoding="utf-8"))
    docs: dict[str, DocInfo] = {}
    tok_name = cached.get("tokenizer", "")
    count: Callable[[str], int] | None = None
    for q in questions:
        if q.doc_key in docs:
            continue
        if q.doc_key in cached.get("docs", {}):
            docs[q.doc_key] = DocInfo(**cached["docs"][q.doc_key])
            continue
        if count is None:
            tok_name, count = generator_token_counter()
        docs[q.doc_key] = doc_info((Path(lara) / split / q.doc_key).read_text(encoding="utf-8"), count)
    if doc_cache is not None and count is not None:
        Path(doc_cache).parent.mkdir(parents=True, exist_ok=True)
        Path(doc_cache).write_text(
            json.dumps({"tokenizer": tok_name, "docs": {k: vars(v) for k, v in docs.items()}}),
            encoding="utf-8",
        )
    retrieval = load_retrieval(retrieval_cache)
    preds = {k: a.prediction for k, a in answers.items()}
    cases = build_cases(questions, verdicts, preds, docs, retrieval)
    return Study(
        questions, cases, load_paper_table(Path(lara) / f"paper_table_{split}.csv"), tok_name, len(retrieval)
    )


def document_folds(questions: Sequence[Question], k: int) -> list[set[str]]:
    """k folds of documents, balanced by question count (deterministic)."""
    sizes: dict[str, int] = {}
    for q in questions:
        sizes[q.doc_key] = sizes.get(q.doc_key, 0) + 1
    folds: list[set[str]] = [set() for _ in range(k)]
    load = [0] * k
    for g in sorted(sizes, key=lambda g: (-sizes[g], g)):
        i = load.index(min(load))
        folds[i].add(g)
        load[i] += sizes[g]
    return folds
