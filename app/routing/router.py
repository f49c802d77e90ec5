"""The router: per question, RAG or long context (LC), with the reason in words.

Three layers, in order:

1. Hard limits (rules): the documents must fit the window, and reading them whole must fit
   the latency budget unless their prefix is already cached.
2. With the question known, a learned score (logistic regression; weights as data in
   ``app/routing/router_policy.json``) estimates how likely LC answers better than RAG, from the
   question type (``app.routing.qtype``), the document, the model's profile (measured long-context
   strength, ``app/routing/router_profiles.json``) and, when given, retrieval evidence. LC when the
   score clears a threshold: a high one when LC must read the whole document (~10x the prompt
   tokens of RAG), a low one when the document is cached and LC costs little.
3. After a RAG answer (``should_fall_back``): the Self-Route rule (the answer says the
   excerpts do not contain it, and the question does not look like a trick question) or a
   second learned score over the answer's cues sends the question to the whole document.

Every decision carries its facts (``RouteFacts``: typed, what code acts on) and, derived from
them, its features (a flat mapping that the CLI, the JSON output and the eval reports show).
See docs/router.md for how the weights were trained and how well they do.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from app.refusals import is_pure_refusal, is_refusal
from app.routing.profiles import ModelProfile, load_calibrated, size_class
from app.routing.qtype import QTYPES, QTypePrediction, QuestionTypeClassifier
from pipeline.types import RouteDecision, RouteFacts

POLICY_PATH = Path(__file__).with_name("router_policy.json")
PROFILES_PATH = Path(__file__).with_name("router_profiles.json")


@dataclass(frozen=True)
class RetrievalEvidence:
    """What retrieval found for the question, before any answer is generated."""

    top_score: float  # best dense (cosine) score among the retrieved passages
    score_gap: float  # best minus second-best dense score
    scatter: float  # spread of the top passages over the document: 0 one place .. 1 all over
    n_hits: int


def retrieval_evidence(
    positions: Sequence[float], scores: Sequence[float | None], top: int = 5
) -> RetrievalEvidence | None:
    """Evidence from retrieved passages: ``positions`` are passage starts as a fraction of the
    document (0..1), ``scores`` their dense scores (None where a passage came from BM25 only)."""
    if not positions:
        return None
    dense = sorted((s for s in scores if s is not None), reverse=True)
    pos = sorted(positions[:top])
    # Scatter: how far apart the first and last of the top passages sit, as a share of the document.
    spread = pos[-1] - pos[0] if len(pos) > 1 else 0.0
    return RetrievalEvidence(
        top_score=round(dense[0], 4) if dense else 0.0,
        score_gap=round(dense[0] - dense[1], 4) if len(dense) > 1 else 0.0,
        scatter=round(spread, 4),
        n_hits=len(positions),
    )


@dataclass(frozen=True)
class RouteInputs:
    doc_tokens: int
    window: int
    reserved_tokens: int
    prefill_tokens_per_s: float
    cached_tokens: int
    latency_budget_s: float
    window_fraction: float = 0.9
    question: str = ""
    retrieval: RetrievalEvidence | None = None
    model: ModelProfile | None = None
    doc_digit_share: float | None = None  # share of digits in the document text (tables, statements)
    # The most document tokens whose KV cache and activations fit the accelerator's free memory
    # (gpu.memory.max_lc_tokens; None: no such limit known, e.g. llama.cpp on the CPU or a server).
    memory_tokens: int | None = None


# -- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearScore:
    """A logistic regression over named features: P(long context answers better than RAG)."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def score(self, feats: dict[str, float]) -> float:
        z = self.intercept + sum(c * feats.get(f, 0.0) for f, c in zip(self.features, self.coef))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def contributions(self, feats: dict[str, float]) -> list[tuple[str, float]]:
        """Each feature's push towards LC (+) or RAG (-), largest first."""
        parts = [(f, c * feats.get(f, 0.0)) for f, c in zip(self.features, self.coef)]
        return sorted(parts, key=lambda kv: -abs(kv[1]))

    def to_json(self) -> dict:
        return {
            "features": list(self.features),
            "coef": [round(c, 5) for c in self.coef],
            "intercept": round(self.intercept, 5),
        }

    @classmethod
    def from_json(cls, d: dict) -> LinearScore:
        if len(d["features"]) != len(d["coef"]):
            raise ValueError(f"policy has {len(d['features'])} features but {len(d['coef'])} weights")
        return cls(tuple(d["features"]), tuple(float(c) for c in d["coef"]), float(d["intercept"]))


@dataclass(frozen=True)
class Thresholds:
    lc: float = 0.65  # before answering: LC when the score clears this and the document must be read
    lc_cached: float = 0.5  # ... and this when the document's prefix is cached (LC then costs little)
    fallback: float = 0.8  # after a RAG answer: read the whole document when its score clears this
    # Self-Route rule for this model: fall back after a refusal only when P(unanswerable) is below
    # this (None: the policy's ``fallback_max_hallu``). Chosen with the other thresholds.
    fallback_max_hallu: float | None = None


@dataclass(frozen=True)
class RouterPolicy:
    """Two learned scores and their thresholds (``app/routing/router_policy.json``).

    ``before`` scores a question before anything is generated; ``after`` scores it again once
    the RAG answer is known (a refusal or a hedged answer is a strong hint that the excerpts
    missed something). Thresholds were chosen on training documents to maximise accuracy
    within a prompt-token budget; per model where the model was measured.
    """

    before: LinearScore
    after: LinearScore
    thresholds: Thresholds = field(default_factory=Thresholds)
    per_model: dict[str, Thresholds] = field(default_factory=dict)
    fallback_max_hallu: float = 0.5  # Self-Route rule: fall back only when P(unanswerable) is below
    default_lc_advantage: dict[str, float] = field(default_factory=dict)  # by size class
    budget: float = 0.4
    trained_on: str = ""
    # Set when the policy was trained with retrieval evidence (top score, gap, scatter): the training
    # means, standing in when a question comes without any (it must not read "no evidence" as "top
    # score 0").
    retrieval_defaults: RetrievalEvidence | None = None

    @property
    def uses_retrieval(self) -> bool:
        """Trained with retrieval evidence: the service then retrieves before deciding (the passages
        are reused when RAG is chosen) and passes ``RouteInputs.retrieval``."""
        return self.retrieval_defaults is not None

    def thresholds_for(self, model: str) -> Thresholds:
        return self.per_model.get(model, self.thresholds)

    def max_hallu_for(self, model: str) -> float:
        """The Self-Route rule's P(unanswerable) limit for this model."""
        t = self.thresholds_for(model).fallback_max_hallu
        return self.fallback_max_hallu if t is None else t

    def to_json(self) -> dict:
        return {
            "kind": "longqa-router-policy",
            "trained_on": self.trained_on,
            "budget": self.budget,
            "retrieval_defaults": asdict(self.retrieval_defaults) if self.retrieval_defaults else None,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "thresholds": asdict(self.thresholds),
            "per_model": {m: asdict(t) for m, t in sorted(self.per_model.items())},
            "fallback_max_hallu": self.fallback_max_hallu,
            "default_lc_advantage": self.default_lc_advantage,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, data: dict) -> RouterPolicy:
        if data.get("kind") != "longqa-router-policy":
            raise ValueError("not a router policy file (kind != 'longqa-router-policy')")
        return cls(
            before=LinearScore.from_json(data["before"]),
            after=LinearScore.from_json(data["after"]),
            thresholds=Thresholds(**data["thresholds"]),
            per_model={m: Thresholds(**t) for m, t in data.get("per_model", {}).items()},
            fallback_max_hallu=float(data["fallback_max_hallu"]),
            default_lc_advantage={k: float(v) for k, v in data.get("default_lc_advantage", {}).items()},
            budget=float(data.get("budget", 0.4)),
            trained_on=str(data.get("trained_on", "")),
            retrieval_defaults=(
                RetrievalEvidence(**data["retrieval_defaults"]) if data.get("retrieval_defaults") else None
            ),
        )


@lru_cache(maxsize=4)
def load_policy(path: str = str(POLICY_PATH)) -> RouterPolicy:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"router policy '{p}' is missing; run benchmarks/router_train.py to create it"
        )
    return RouterPolicy.from_json(json.loads(p.read_text(encoding="utf-8")))


@lru_cache(maxsize=4)
def load_qtype(path: str = "") -> QuestionTypeClassifier:
    return QuestionTypeClassifier.load(path) if path else QuestionTypeClassifier.load()


@lru_cache(maxsize=1)
def _profiles_file() -> dict:
    if not PROFILES_PATH.is_file():
        return {}
    return json.loads(PROFILES_PATH.read_text(encoding="utf-8"))


def _profiles() -> dict[str, dict]:
    return _profiles_file().get("models", {})


def class_prior(params_b: float | None) -> ModelProfile | None:
    """The prior of the model's class (by size; closed and unknown models: all models pooled),
    with the spread between that class's models as its uncertainty."""
    classes = _profiles_file().get("classes", {})
    d = classes.get(size_class(params_b)) or classes.get("unknown")
    return ModelProfile.from_json("", d) if d else None


@lru_cache(maxsize=8)
def _calibrated(path: str, mtime: float) -> ModelProfile | None:
    return load_calibrated(path)


def model_profile(
    name: str, params_b: float | None = None, calibrated: str | Path | None = None
) -> ModelProfile:
    """A generator's profile: a ``longqa calibrate`` file for this model when given and present,
    else the published LaRA measurements (``router_profiles.json``), else its class's prior."""
    if calibrated is not None and Path(calibrated).is_file():
        cal = _calibrated(str(calibrated), Path(calibrated).stat().st_mtime)
        if cal is not None and cal.name == name:
            return cal if cal.params_b is not None else replace(cal, params_b=params_b)
    known = _profiles().get(name) or _profiles().get(Path(name).stem.lower())
    if known:
        p = ModelProfile.from_json(name, known)
        return replace(p, params_b=p.params_b if p.params_b is not None else params_b)
    prior = class_prior(params_b)
    if prior is not None:
        return replace(prior, name=name, params_b=params_b)
    return ModelProfile(name, params_b, None)


def digit_share(texts: Sequence[str], sample_chars: int = 100_000) -> float:
    """Share of digits in the documents (statements and tables are number-heavy), from their starts."""
    parts = [t[:sample_chars] for t in texts]
    total = sum(len(p) for p in parts)
    return round(sum(ch.isdigit() for p in parts for ch in p) / total, 5) if total else 0.0


def task_aware(model: ModelProfile) -> bool:
    """Whether the router reads the profile's per-task advantages: only for a profile that
    ``longqa calibrate`` measured on the user's own model (docs/router.md, "Per task, for a
    calibrated model"). Published and prior profiles give the policy the mean over task types, as
    it was trained (per-task values did not help on LaRA's 13 models)."""
    return model.source == "calibrated" and any(p.by_task for p in model.points)


def policy_features(
    qt: QTypePrediction,
    model: ModelProfile | None,
    *,
    doc_tokens: int,
    doc_digit_share: float | None,
    retrieval: RetrievalEvidence | None,
    cached: bool,
    default_lc_advantage: dict[str, float] | None = None,
    retrieval_defaults: RetrievalEvidence | None = None,
    uncertainty_penalty: float = 0.0,
) -> dict[str, float]:
    """The learned policy's inputs; training (benchmarks/router_train.py) uses this same function.
    Without ``retrieval``, the evidence features take ``retrieval_defaults`` (``ret_missing`` = 1).
    The model's advantage is the profile's at this document's length, less ``uncertainty_penalty``
    x its uncertainty (an uncertain profile leans to RAG); ``q_<type>_x_tadv`` weigh each question
    type by the profile's advantage on that type. For a calibrated profile with per-task values
    (``task_aware``), ``model_lc_adv`` and ``q_<type>_x_adv`` take those too."""
    model = model or ModelProfile()
    adv = model.advantage_at(doc_tokens, uncertainty_penalty)
    if adv is None:
        adv = (default_lc_advantage or {}).get(size_class(model.params_b), 0.0)
    f: dict[str, float] = {f"q_{t}": qt.probs.get(t, 0.0) for t in QTYPES}
    tadvs = {t: model.task_advantage_at(doc_tokens, t, uncertainty_penalty) for t in QTYPES}
    tadvs = {t: adv if v is None else v for t, v in tadvs.items()}
    if task_aware(model):
        # A calibration measured this model per task type: the advantage that counts for this
        # question is its type's (weighed by the classifier's belief), not the mean over types.
        adv = sum(f[f"q_{t}"] * tadvs[t] for t in QTYPES) / max(sum(f[f"q_{t}"] for t in QTYPES), 1e-9)
    f["model_lc_adv"] = adv
    f["model_adv_sd"] = model.sd_at(doc_tokens)
    f["model_log_params"] = math.log10(model.params_b) if model.params_b else 1.0
    for t in QTYPES:
        f[f"q_{t}_x_adv"] = f[f"q_{t}"] * (tadvs[t] if task_aware(model) else adv)
        f[f"q_{t}_x_tadv"] = f[f"q_{t}"] * tadvs[t]
    f["doc_digits"] = doc_digit_share if doc_digit_share is not None else 0.0
    f["doc_log_ktokens"] = math.log2(max(doc_tokens, 1) / 1000)
    ev = retrieval or retrieval_defaults
    f["ret_top"] = ev.top_score if ev else 0.0
    f["ret_gap"] = ev.score_gap if ev else 0.0
    f["ret_scatter"] = ev.scatter if ev else 0.0
    f["ret_missing"] = 0.0 if retrieval else 1.0
    f["cached"] = 1.0 if cached else 0.0
    return f


_HEDGE = re.compile(
    r"\b(?:however|although|but|may|might|appears?|seems?|likely|possibly|not explicitly|not directly|"
    r"unclear|based on the)\b"
)
_EXCERPTS = re.compile(r"\b(?:chunks?|excerpts?|passages?|provided (?:text|context|sources|information))\b")
_WORD = re.compile(r"[a-z]+|\d+")
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_PART = re.compile(r"\bpaper \d+\b")
_NUMBER = re.compile(r"\d[\d,.]*")
_STOP = frozenset(  # words that say nothing about what is asked
    re.findall(
        r"\w+",
        "the a an of in on to and or for with by from at as is are was were be been what which who whom how "
        "why when where does did do that this these those it its their his her they he she paper according "
        "text document company during than more most between both",
    )
)


def _cover(asked: set[str], said: set[str]) -> float:
    return len(asked & said) / len(asked) if asked else 1.0


def answer_features(rag_answer: str, question: str = "") -> dict[str, float]:
    """Cues in a RAG answer that the excerpts missed something: a refusal, hedges, talk of excerpts,
    and how much of what the question asks about (its words, years, papers) the answer covers."""
    t = rag_answer.lower()
    q = question.lower()
    hedges = len(_HEDGE.findall(t))
    asked = {w for w in _WORD.findall(q) if len(w) > 2 and w not in _STOP}
    return {
        "ans_refused": 1.0 if is_refusal(rag_answer) else 0.0,
        "ans_hedged": 1.0 if hedges else 0.0,
        "ans_hedges": min(hedges, 10) / 5,
        "ans_log_words": math.log1p(len(t.split())) / 5,
        "ans_has_number": 1.0 if re.search(r"\d", t) else 0.0,
        "ans_excerpts": 1.0 if _EXCERPTS.search(t) else 0.0,
        "ans_pure_refusal": 1.0 if is_pure_refusal(rag_answer) else 0.0,
        "ans_q_cover": _cover(asked, set(_WORD.findall(t))) if asked else 0.0,
        "ans_year_cover": _cover(set(_YEAR.findall(q)), set(_YEAR.findall(t))),
        "ans_paper_cover": _cover(set(_PART.findall(q)), set(_PART.findall(t))),
        "ans_nums": min(len(_NUMBER.findall(t)), 10) / 5,
    }


def after_features(
    before: dict[str, float], p_before: float, rag_answer: str, question: str = ""
) -> dict[str, float]:
    """The second score's inputs: the question-time features, the first score, the RAG answer and
    how well it covers the question."""
    a = answer_features(rag_answer, question)
    f = {**before, **a, "p_before": p_before}
    for k, v in a.items():
        f[f"{k}_x_p"] = v * p_before
    return f


# -- reasons ------------------------------------------------------------------------------------

_FEATURE_WORDS = {
    "q_location": "single-fact lookup",
    "q_reasoning": "multi-step reasoning",
    "q_comp": "comparison across parts",
    "q_hallu": "looks unanswerable from the text",
    "model_lc_adv": "the model's measured long-context strength",
    "model_log_params": "model size",
    "doc_digits": "number-heavy document",
    "doc_log_ktokens": "document length",
    "ret_top": "retrieval confidence",
    "ret_gap": "one passage stands out",
    "ret_scatter": "top passages scattered across the document",
}


def _why(contribs: list[tuple[str, float]], towards_lc: bool, skip: str = "", n: int = 2) -> str:
    words = []
    for name, value in contribs:
        if (value > 0) != towards_lc or abs(value) < 0.05 or name in ("ret_missing", skip):
            continue
        base = name.replace("_x_adv", "")
        text = _FEATURE_WORDS.get(base, base)
        if name.endswith("_x_adv"):
            text = f"{text}, given the model's long-context strength"
        if text not in words:
            words.append(text)
        if len(words) == n:
            break
    return "; ".join(words)


def route(
    x: RouteInputs,
    *,
    policy: RouterPolicy | None = None,
    qtype: QuestionTypeClassifier | None = None,
) -> RouteDecision:
    capacity = int(x.window * x.window_fraction) - x.reserved_tokens
    memory_bound = x.memory_tokens is not None and x.memory_tokens - x.reserved_tokens < capacity
    if memory_bound:
        assert x.memory_tokens is not None
        capacity = max(0, x.memory_tokens - x.reserved_tokens)
    to_read = max(0, x.doc_tokens - x.cached_tokens)
    lc_seconds = to_read / max(x.prefill_tokens_per_s, 1e-6)
    cached = x.cached_tokens >= x.doc_tokens * 0.9 and x.doc_tokens > 0
    facts = RouteFacts(
        doc_tokens=x.doc_tokens,
        window=x.window,
        capacity=capacity,
        cached_tokens=x.cached_tokens,
        predicted_lc_seconds=round(lc_seconds, 2),
        latency_budget_s=x.latency_budget_s,
        memory_tokens=x.memory_tokens,
        memory_bound=memory_bound,
    )
    if x.doc_tokens > capacity:
        limit = (
            "whose KV cache fits the GPU's free memory"
            if memory_bound
            else f"that fit the model's {x.window:,}-token window"
        )
        return RouteDecision(
            "rag",
            f"the documents have {x.doc_tokens:,} tokens, more than the {capacity:,} {limit}; "
            "retrieving the relevant passages",
            facts,
        )
    if lc_seconds > x.latency_budget_s:
        return RouteDecision(
            "rag",
            f"reading all {x.doc_tokens:,} tokens would take about {lc_seconds:,.0f} s at "
            f"{x.prefill_tokens_per_s:,.0f} tokens/s, over the {x.latency_budget_s:,.0f} s budget; "
            "retrieving the relevant passages",
            facts,
        )
    fits = (
        f"the documents ({x.doc_tokens:,} tokens) fit the {x.window:,}-token window"
        f"{' and are cached' if cached else ''}"
    )
    if not x.question.strip():
        return RouteDecision(
            "lc",
            f"{fits}; reading them whole takes about {lc_seconds:,.0f} s, within the "
            f"{x.latency_budget_s:,.0f} s budget",
            facts,
        )
    policy = policy or load_policy()
    qt = (qtype or load_qtype()).predict(x.question)
    feats = policy_features(
        qt,
        x.model,
        doc_tokens=x.doc_tokens,
        doc_digit_share=x.doc_digit_share,
        retrieval=x.retrieval,
        cached=cached,
        default_lc_advantage=policy.default_lc_advantage,
        retrieval_defaults=policy.retrieval_defaults,
    )
    p_lc = policy.before.score(feats)
    th = policy.thresholds_for(x.model.name if x.model else "")
    threshold = th.lc_cached if cached else th.lc
    facts = replace(
        facts,
        policy_inputs={k: round(v, 4) for k, v in feats.items()},
        p_lc_better=round(p_lc, 4),
        threshold=threshold,
    )
    kind = f"{qt.description} question ({qt.probs[qt.label]:.0%})"
    contribs = policy.before.contributions(feats)
    if p_lc >= threshold:
        why = _why(contribs, towards_lc=True, skip=f"q_{qt.label}")
        cost = "reading it whole costs little" if cached else f"worth reading whole (score {p_lc:.2f})"
        return RouteDecision("lc", f"{kind}; {why + '; ' if why else ''}{fits}; {cost}", facts)
    why = _why(contribs, towards_lc=False, skip=f"q_{qt.label}")
    extra = "" if cached else f"; reading all {x.doc_tokens:,} tokens costs far more than a few passages"
    return RouteDecision(
        "rag",
        f"{kind}; {why + '; ' if why else ''}long context is not likely enough to do better "
        f"(score {p_lc:.2f} < {threshold:.2f}){extra}; retrieving the relevant passages",
        facts,
    )


def cache_could_flip(d: RouteDecision) -> bool:
    """Whether knowing that the documents are cached could turn this RAG decision into LC: they
    fit the window, and either the latency budget or the score's uncached threshold said RAG."""
    f = d.facts
    if d.mode != "rag" or d.forced or f is None or f.fill > 1.0:
        return False
    if f.p_lc_better is None:  # the latency rule decided
        return f.predicted_lc_seconds > f.latency_budget_s
    policy = load_policy()
    return f.p_lc_better >= min(
        policy.thresholds.lc_cached, *(t.lc_cached for t in policy.per_model.values())
    )


@dataclass(frozen=True)
class Fallback:
    rerun: bool
    reason: str
    score: float  # the second score, P(LC better) given the RAG answer
    rule: bool  # True when the Self-Route rule fired (a refusal on a question that is no trick)
    # "lc" when the documents fit the window and the latency budget, else "rag-wide" (more passages)
    target: str = ""


def should_fall_back(
    question: str,
    rag_answer: str,
    before: RouteDecision,
    *,
    model: str = "",
    policy: RouterPolicy | None = None,
    qtype: QuestionTypeClassifier | None = None,
) -> Fallback:
    """After a RAG answer: read the whole document after all?

    Self-Route rule: the answer says the excerpts do not contain it, and the question does not
    look like a trick question (one the text cannot answer, where "not found" is right). Learned:
    the second score, which also weighs hedges and the first score, clears its threshold.
    """
    policy = policy or load_policy()
    facts = before.facts
    if facts is not None and facts.p_lc_better is not None and facts.p_unanswerable is not None:
        feats, p_before, p_hallu = dict(facts.policy_inputs), facts.p_lc_better, facts.p_unanswerable
    else:  # a forced or legacy decision: score the question now
        qt = (qtype or load_qtype()).predict(question)
        feats = policy_features(
            qt,
            None,
            doc_tokens=facts.doc_tokens if facts is not None else 0,
            doc_digit_share=None,
            retrieval=None,
            cached=False,
            default_lc_advantage=policy.default_lc_advantage,
            retrieval_defaults=policy.retrieval_defaults,
        )
        p_before = policy.before.score(feats)
        p_hallu = feats["q_hallu"]
    after = after_features(feats, p_before, rag_answer, question)
    p2 = policy.after.score(after)
    th = policy.thresholds_for(model)
    refused = after["ans_refused"] > 0
    fits = facts is not None and facts.lc_fits
    target, then = (
        ("lc", "the whole document was read") if fits else ("rag-wide", "three times more passages were read")
    )
    if refused and p_hallu < policy.max_hallu_for(model):
        return Fallback(
            True,
            f"the excerpts did not contain the answer and the question does not look like a trick "
            f"question ({p_hallu:.0%} unanswerable), so {then} (Self-Route fallback)",
            p2,
            True,
            target,
        )
    if p2 >= th.fallback:
        return Fallback(
            True,
            f"the RAG answer looks unsure (fallback score {p2:.2f} >= {th.fallback:.2f}), so {then}",
            p2,
            False,
            target,
        )
    if refused:
        return Fallback(
            False,
            f"the excerpts did not contain the answer, and the question looks unanswerable from the text "
            f"({p_hallu:.0%}), so that answer stands",
            p2,
            False,
        )
    return Fallback(False, "", p2, False)
