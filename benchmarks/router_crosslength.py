"""Cross-length router validation on LaRA's published answers (no LLM runs): train on one split,
test on the other, folds by document on the test split, leave-one-model-out for the profiles.

    .venv/bin/python benchmarks/router_crosslength.py --lara32 ../shared/data/lara \\
        --lara128 ~/.cache/longqa/lara128k [--direction both] [--budget 0.4] [--json out.json]

For a direction S -> T (32k -> 128k or 128k -> 32k), everything the policy learns (question-type
classifier, the two scores, the per-model fallback limits) is fitted on S only. T's documents are
split into 5 folds; for each fold, the other T folds play the part of a calibration set (what
``longqa calibrate`` measures for a model at T's lengths), and the fold's documents are scored.
Policies compared, per model:

- fixed modes, Self-Route, the per-task oracle (true task, the better mode per task from the
  paper's T table) and the question oracle;
- before-only: decide before answering from length + question type + document kind (a logistic
  regression per model trained on S, threshold within the budget on S, no fallback);
- S-fitted router, single-number profile, fixed thresholds (how the shipped router moves);
- length profiles, budget threshold: profiles fitted on S (flat beyond S's lengths), before
  threshold set on the calibration documents' score distribution to spend the budget (no T verdicts);
- calibrated: profiles fitted on S + the model's calibration documents at T, thresholds chosen on
  them (accuracy within the budget);
- calibrated, leave-one-model-out: the model's own T answers unused; its profile is its class's
  prior (from the other models), less ``--penalty`` x the prior's uncertainty, and the before
  threshold set on the score distribution (its RAG refusals on the calibration documents only).

``--grounding`` adds to the after-score how much of the RAG answer the whole document contains
(tried for issue 20: no gain, docs/router.md). ``--gain`` adds variants that rank LC by its
expected gain instead of P(LC better | disagree) (tried: no gain, docs/router.md). No retrieval
evidence (128k documents were not ingested). Tokens: LC = document + 100, RAG = 3,100.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.routing.profiles import ModelProfile  # noqa: E402
from app.routing.qtype import train_qtype  # noqa: E402
from app.routing.router import after_features, policy_features  # noqa: E402
from eval.lara import KINDS, TASKS, per_task_oracle  # noqa: E402
from eval.router_length import (  # noqa: E402
    budget_threshold,
    length_profiles,
    prior_for,
    spend,
)
from eval.router_study import (  # noqa: E402
    Case,
    PolicyResult,
    choose_policy,
    decide,
    document_folds,
    fit_lr,
    linear,
    load_study,
    matrix,
    measured_profiles,
    pick,
)

CACHE = Path.home() / ".cache" / "longqa" / "bench"
FALLBACK_MAX_HALLU = 0.5


def tagged(study, tag: str):  # type: ignore[no-untyped-def]
    """Questions and cases with the split in their ids (both splits number questions alike)."""
    qs = [replace(q, qid=f"{tag}:{q.qid}") for q in study.questions]
    by = {q.qid.split(":", 1)[1]: q for q in qs}
    cases = [replace(c, q=by[c.q.qid]) for c in study.cases]
    return qs, cases


class Policy:
    """The two scores fitted on source cases with given profiles (the router's own features)."""

    def __init__(self, cases, qtypes, profiles, *, use_length: bool, tadv: bool, penalty: float = 0.0):  # type: ignore[no-untyped-def]
        self.use_length, self.tadv, self.penalty = use_length, tadv, penalty
        rows = self.rows(cases, qtypes, profiles)
        drop = {"cached", "ret_top", "ret_gap", "ret_scatter", "ret_missing", "model_adv_sd"}
        if not use_length:
            drop.add("doc_log_ktokens")
        if not tadv:
            drop |= {k for k in rows[0] if k.endswith("_x_tadv")}
        self.names1 = [k for k in rows[0] if k not in drop]
        self.before = linear(fit_lr(matrix(rows, self.names1), cases), self.names1)
        rows2 = [self._after(r, self.before.score(r), c) for r, c in zip(rows, cases)]
        self.names2 = [k for k in rows2[0] if k not in drop]
        self.after = linear(fit_lr(matrix(rows2, self.names2), cases), self.names2)

    def rows(self, cases, qtypes, profiles):  # type: ignore[no-untyped-def]
        return [
            policy_features(
                qtypes[c.q.qid],
                profiles[c.model],
                doc_tokens=c.doc.tokens,
                doc_digit_share=c.doc.digit_share,
                retrieval=None,
                cached=False,
                uncertainty_penalty=self.penalty,
            )
            for c in cases
        ]

    def score(self, cases, qtypes, profiles):  # type: ignore[no-untyped-def]
        rows = self.rows(cases, qtypes, profiles)
        s1 = np.array([self.before.score(r) for r in rows])
        s2 = np.array([self.after.score(self._after(r, a, c)) for r, a, c in zip(rows, s1, cases)])
        return s1, s2

    @staticmethod
    def _after(row, p_before, c):  # type: ignore[no-untyped-def]
        f = after_features(row, p_before, c.rag_answer, c.q.question)
        g = GROUNDING.get((c.model, c.q.qid))
        if g is not None:
            f["ans_grounded"], f["ans_foreign_number"] = g
            f["ans_grounded_x_p"] = g[0] * p_before
        return f


# (model, tagged qid) -> (share of the RAG answer's words beyond the question found in the
# document, 1.0 when a number of two or more digits in it is nowhere in the document); filled by
# --grounding. Empty: the router's own after-features only.
GROUNDING: dict[tuple[str, str], tuple[float, float]] = {}
_NUM = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    return {x.replace(",", "").rstrip(".") for x in _NUM.findall(text) if len(x.replace(",", "")) >= 2}


def add_grounding(study, root: Path, split: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    """How much of each RAG answer the whole document contains (issue 20: an answer cue tried)."""
    from eval.lara import document_path
    from pipeline.textspan import terms

    docs: dict[str, tuple[set[str], set[str]]] = {}
    for c in study.cases:
        if c.q.doc_key not in docs:
            text = document_path(root, c.q, split).read_text(encoding="utf-8", errors="ignore")
            docs[c.q.doc_key] = (set(terms(text)), _numbers(text))
        words, nums = docs[c.q.doc_key]
        asked = set(terms(c.q.question))
        said = [w for w in terms(c.rag_answer) if w not in asked]
        share = sum(w in words for w in said) / len(said) if said else 1.0
        foreign = float(any(n not in nums for n in _numbers(c.rag_answer)))
        GROUNDING[(c.model, f"{tag}:{c.q.qid}")] = (share, foreign)


def disagreement_model(pol, cases, qtypes, profiles):  # type: ignore[no-untyped-def]
    """P(LC and RAG answers disagree) from the before-features (the before score is conditional on it)."""
    lm = __import__("sklearn.linear_model", fromlist=["LogisticRegression"])
    x = matrix(pol.rows(cases, qtypes, profiles), pol.names1)
    return lm.LogisticRegression(max_iter=5000).fit(x, [int(c.lc_ok != c.rag_ok) for c in cases])


def gain_scores(kind, pol, dis, cases, calib, qtypes, profiles):  # type: ignore[no-untyped-def]
    """Expected accuracy gain of LC over RAG (P(disagree) x (2 P(LC better | disagree) - 1)),
    per extra prompt token ("-cost"), weighed by the question's expected task weight in the
    macro mean ("-all"); as its rank among the calibration cases' gains (0..1), so the
    threshold grid applies."""

    def raw(cs):  # type: ignore[no-untyped-def]
        rows = pol.rows(cs, qtypes, profiles)
        s1 = np.array([pol.before.score(r) for r in rows])
        pd = dis.predict_proba(matrix(rows, pol.names1))[:, 1]
        g = pd * (2 * s1 - 1)
        if kind in ("gain-dis-cost", "gain-all"):
            g = g / np.array([(c.lc_tokens - c.rag_tokens) / 1000 + 1 for c in cs])
        if kind == "gain-all":
            n = {t: max(1, sum(c.q.task == t for c in calib)) for t in TASKS}
            g = g * np.array([sum(qtypes[c.q.qid].probs.get(t, 0.0) / n[t] for t in TASKS) for c in cs])
        return g

    ref = np.sort(raw(calib))
    return np.searchsorted(ref, raw(cases), side="right") / len(ref)


def single_number(cases: list[Case]) -> dict[str, ModelProfile]:
    return measured_profiles(cases)


def before_only_features(c: Case, qt) -> list[float]:  # type: ignore[no-untyped-def]
    kind = [1.0 if c.q.kind == k else 0.0 for k in KINDS]
    return [*(qt.probs.get(t, 0.0) for t in TASKS), float(np.log2(c.doc.tokens / 1000)), *kind]


def run_direction(src, tgt, s_tag: str, t_tag: str, args) -> dict:  # type: ignore[no-untyped-def]  # noqa: C901
    t0 = time.perf_counter()
    sq, scases = tagged(src, s_tag)
    tq, tcases = tagged(tgt, t_tag)
    models = sorted({c.model for c in scases})
    clf = train_qtype([q.question for q in sq], [q.task for q in sq])
    qtypes = {q.qid: clf.predict(q.question) for q in sq + tq}
    oracle = per_task_oracle(tgt.paper)

    # Learned on the source split only.
    s_single = single_number(scases)
    pol_single = Policy(scases, qtypes, s_single, use_length=True, tadv=False)
    s_prof, s_priors = length_profiles(scases)
    pol_len = Policy(scases, qtypes, s_prof, use_length=False, tadv=args.tadv)
    src_th: dict[str, dict[str, tuple[float, float, float]]] = {"single": {}, "len": {}}
    src_spend: dict[str, float] = {}
    before_only: dict[str, tuple] = {}
    for name, pol, prof in (("single", pol_single, s_single), ("len", pol_len, s_prof)):
        s1, s2 = pol.score(scases, qtypes, prof)
        for m in models:
            idx = [i for i, c in enumerate(scases) if c.model == m]
            sub = [scases[i] for i in idx]
            ref = [c.rag_refused for c in sub]
            hal = [qtypes[c.q.qid].probs["hallu"] for c in sub]
            th = choose_policy(sub, s1[idx], s2[idx], ref, hal, args.budget)
            src_th[name][m] = th
            if name == "len":
                rule = np.array(ref) & (np.array(hal) < th[2])
                src_spend[m] = spend(sub, s1[idx], s2[idx], rule, th[0], th[1])
    linear_mod = __import__("sklearn.linear_model", fromlist=["LogisticRegression"])
    for m in models:
        sub = [c for c in scases if c.model == m]
        x = np.array([before_only_features(c, qtypes[c.q.qid]) for c in sub])
        dis = [i for i, c in enumerate(sub) if c.lc_ok != c.rag_ok]
        lr = linear_mod.LogisticRegression(max_iter=2000).fit(x[dis], [int(sub[i].lc_ok) for i in dis])
        p = lr.predict_proba(x)[:, 1]
        zeros = np.zeros(len(sub))
        t1, _, _ = choose_policy(sub, p, zeros, [False] * len(sub), zeros, args.budget, hallu_grid=(0.0,))
        before_only[m] = (lr, t1)

    names = [
        "always-lc",
        "always-rag",
        "self-route",
        "task-oracle",
        "before-only",
        "shipped-style",
        "len-budget",
        "calibrated",
        "calibrated-lomo",
        "question-oracle",
    ]
    gains = ("gain-dis", "gain-dis-cost", "gain-all") if args.gain else ()
    names[-1:-1] = gains
    res = {n: PolicyResult(n) for n in names}
    folds = document_folds(tq, args.folds)
    for k, test_docs in enumerate(folds):
        calib = [c for c in tcases if c.q.doc_key not in test_docs]
        test = [c for c in tcases if c.q.doc_key in test_docs]
        # Calibrated profiles: the source's answers plus the calibration documents' at T.
        c_prof, c_priors = length_profiles(scases + calib)
        pol_cal = Policy(scases, qtypes, c_prof, use_length=False, tadv=args.tadv)
        dis_model = disagreement_model(pol_cal, scases, qtypes, c_prof) if gains else None
        for m in models:
            te = [c for c in test if c.model == m]
            ca = [c for c in calib if c.model == m]
            te_ref = np.array([c.rag_refused for c in te])
            te_hal = np.array([qtypes[c.q.qid].probs["hallu"] for c in te])
            ca_ref = np.array([c.rag_refused for c in ca])
            ca_hal = np.array([qtypes[c.q.qid].probs["hallu"] for c in ca])

            def run(name, pol, prof, t1, t2, mh, te=te, te_ref=te_ref, te_hal=te_hal):  # type: ignore[no-untyped-def]
                a1, a2 = pol.score(te, qtypes, prof)
                for i, c in enumerate(te):
                    res[name].add(c, decide(c, a1[i], a2[i], bool(te_ref[i] and te_hal[i] < mh), t1, t2))

            def task_mode(task: str, ca=ca, m=m) -> str:  # type: ignore[no-untyped-def]
                """The paper's better mode for the task; models not in its table: from calibration."""
                if m in oracle:
                    return oracle[m][task]
                cs = [c for c in ca if c.q.task == task]
                return "lc" if sum(c.lc_ok for c in cs) >= sum(c.rag_ok for c in cs) else "rag"

            # Fixed modes and baselines.
            lr, bt = before_only[m]
            pb = lr.predict_proba(np.array([before_only_features(c, qtypes[c.q.qid]) for c in te]))[:, 1]
            for i, c in enumerate(te):
                res["always-lc"].add(c, pick(c, "lc"))
                res["always-rag"].add(c, pick(c, "rag"))
                res["self-route"].add(c, pick(c, "rag", True, bool(te_hal[i] < FALLBACK_MAX_HALLU)))
                res["task-oracle"].add(c, pick(c, task_mode(c.q.task)))
                res["before-only"].add(c, pick(c, "lc" if pb[i] >= bt else "rag"))
                res["question-oracle"].add(c, pick(c, "lc" if c.lc_ok and not c.rag_ok else "rag"))
            # As the shipped router moves: source-fitted, single number, fixed thresholds.
            run("shipped-style", pol_single, s_single, *src_th["single"][m])
            # Length profiles from the source only; before threshold on the calibration scores.
            t1, t2, mh = src_th["len"][m]
            a1, a2 = pol_len.score(ca, qtypes, s_prof)
            target = min(src_spend[m], args.budget) - args.margin
            bt1, bt2 = budget_threshold(ca, a1, a2, ca_ref & (ca_hal < mh), t2, target)
            run("len-budget", pol_len, s_prof, bt1, bt2, mh)
            # Calibrated: thresholds chosen on the calibration documents' verdicts.
            a1, a2 = pol_cal.score(ca, qtypes, c_prof)
            ct = choose_policy(ca, a1, a2, list(ca_ref), list(ca_hal), args.budget - args.margin)
            run("calibrated", pol_cal, c_prof, *ct)
            # The same after-score as "calibrated" (a2 above), ranked by expected gain before.
            _, b2 = pol_cal.score(te, qtypes, c_prof) if gains else (None, None)
            for g in gains:
                ga = gain_scores(g, pol_cal, dis_model, ca, ca, qtypes, c_prof)
                gt = choose_policy(ca, ga, a2, list(ca_ref), list(ca_hal), args.budget - args.margin)
                gte = gain_scores(g, pol_cal, dis_model, te, ca, qtypes, c_prof)
                for i, c in enumerate(te):
                    rule = bool(te_ref[i] and te_hal[i] < gt[2])
                    res[g].add(c, decide(c, gte[i], b2[i], rule, gt[0], gt[1]))
            # Leave one model out: the class prior (from the other models) stands in for the profile.
            others = [c for c in scases + calib if c.model != m]
            _, lo_priors = length_profiles(others)
            lomo = dict(c_prof)
            lomo[m] = prior_for(m, lo_priors)
            pol_lo = Policy(
                [c for c in scases if c.model != m],
                qtypes,
                lomo,
                use_length=False,
                tadv=args.tadv,
                penalty=args.penalty,
            )
            t2s = float(np.median([src_th["len"][x][1] for x in models if x != m]))
            mhs = float(np.median([src_th["len"][x][2] for x in models if x != m]))
            a1, a2 = pol_lo.score(ca, qtypes, lomo)
            lt1, lt2 = budget_threshold(ca, a1, a2, ca_ref & (ca_hal < mhs), t2s, args.budget - args.margin)
            run("calibrated-lomo", pol_lo, lomo, lt1, lt2, mhs)
        print(
            f"  {s_tag}->{t_tag} fold {k + 1}/{len(folds)} ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )

    out = {"models": {}, "mean": {}, "mean_tokens": {}}
    print(f"\n### Train {s_tag} -> test {t_tag} ({args.folds} folds by document on {t_tag})\n")
    head = ["model", *names]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for m in models:
        cells = [f"{res[n].accuracy(m):.1f} ({res[n].token_ratio(m):.0%})" for n in names]
        print(f"| {m} | " + " | ".join(cells) + " |")
        out["models"][m] = {
            n: {"accuracy": res[n].accuracy(m), "tokens": res[n].token_ratio(m)} for n in names
        }
    for n in names:
        out["mean"][n] = float(np.mean([res[n].accuracy(m) for m in models]))
        out["mean_tokens"][n] = float(np.mean([res[n].token_ratio(m) for m in models]))
    print(
        "| **mean** | "
        + " | ".join(f"**{out['mean'][n]:.1f}** ({out['mean_tokens'][n]:.0%})" for n in names)
        + " |"
    )
    for n in ("len-budget", "calibrated", "calibrated-lomo"):
        above = sum(
            res[n].accuracy(m) > max(res["always-lc"].accuracy(m), res["always-rag"].accuracy(m))
            for m in models
        )
        over = [m for m in models if res[n].token_ratio(m) > args.budget]
        print(
            f"\n{n}: mean − per-task oracle {out['mean'][n] - out['mean']['task-oracle']:+.1f} points; "
            f"above both fixed modes for {above}/{len(models)} models; "
            "over the budget on held-out documents: "
            f"{', '.join(f'{m} ({res[n].token_ratio(m):.0%})' for m in over) or 'none'}"
        )
    return out


def load(root: Path, split: str, cache: Path | None):  # type: ignore[no-untyped-def]
    """The judged study of a split (from ``cache`` when it was kept there before)."""
    import pickle

    path = cache / f"study_{split}.pkl" if cache else None
    if path is not None and path.is_file():
        return pickle.loads(path.read_bytes())
    study = load_study(root, split=split, doc_cache=CACHE / f"lara_docs_{split}.json")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(study))
    return study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara32", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument("--lara128", type=Path, default=CACHE.parent / "lara128k")
    ap.add_argument("--direction", choices=("both", "32to128", "128to32"), default="both")
    ap.add_argument("--budget", type=float, default=0.40)
    ap.add_argument(
        "--margin", type=float, default=0.02, help="aim this far below the budget on calibration data"
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--penalty", type=float, default=0.5, help="x the profile's uncertainty, for unmeasured models"
    )
    ap.add_argument("--no-tadv", dest="tadv", action="store_false", help="no per-task advantage features")
    ap.add_argument(
        "--grounding", action="store_true", help="add how much of the RAG answer the document contains"
    )
    ap.add_argument("--gain", action="store_true", help="also rank LC by expected gain (issue 20 probe)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--study-cache", type=Path, default=None, help="keep the judged studies here (pickles)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    s32, s128 = load(args.lara32, "32k", args.study_cache), load(args.lara128, "128k", args.study_cache)
    print(f"loaded and judged in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.grounding:
        add_grounding(s32, args.lara32, "32k", "32k")
        add_grounding(s128, args.lara128, "128k", "128k")
    out = {}
    if args.direction in ("both", "32to128"):
        out["32k->128k"] = run_direction(s32, s128, "32k", "128k", args)
    if args.direction in ("both", "128to32"):
        out["128k->32k"] = run_direction(s128, s32, "128k", "32k", args)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
