"""Train the shipped router on all of LaRA 32k and write its weights as data:

    app/routing/router_qtype.json     question-type classifier
    app/routing/router_policy.json    the two scores (before answering, after the RAG answer) and thresholds
    app/routing/router_profiles.json  measured long-context strength of the 13 models with published answers

    .venv/bin/python benchmarks/router_train.py [--lara ../shared/data/lara]
        [--retrieval-cache ~/.cache/longqa/bench/lara_retrieval.json] [--budget 0.4]

With --retrieval-cache (made by benchmarks/router_retrieval.py) the policy weighs retrieval
evidence and keeps its means (``retrieval_defaults``, hence ``uses_retrieval``): the service then
retrieves before deciding.

The figures that say how well this generalises come from benchmarks/router_offline.py, which
fits the same pieces on training documents only (docs/router.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# One BLAS/OpenMP thread: the logistic-regression fits are faster so (small problems) and the
# chosen thresholds do not change with the machine's thread count (they did, in the last digit).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.routing.qtype import DEFAULT_WEIGHTS  # noqa: E402
from app.routing.router import POLICY_PATH, PROFILES_PATH, RetrievalEvidence, RouterPolicy, Thresholds  # noqa: E402
from eval.router_study import choose_policy, fit_fold, load_study, rule_inputs, score_cases  # noqa: E402

DEFAULT_LARA = ROOT.parent / "shared" / "data" / "lara"


def mean_evidence(evidence: list[RetrievalEvidence]) -> RetrievalEvidence | None:
    """The training means, used for questions that come without retrieval evidence."""
    if not evidence:
        return None
    return RetrievalEvidence(
        top_score=round(statistics.fmean(e.top_score for e in evidence), 4),
        score_gap=round(statistics.fmean(e.score_gap for e in evidence), 4),
        scatter=round(statistics.fmean(e.scatter for e in evidence), 4),
        n_hits=0,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=DEFAULT_LARA)
    ap.add_argument("--retrieval-cache", type=Path, default=None)
    ap.add_argument("--budget", type=float, default=0.40)
    ap.add_argument("--c", type=float, default=1.0)
    ap.add_argument("--fallback-max-hallu", type=float, default=0.5)
    args = ap.parse_args()
    t0 = time.perf_counter()
    study = load_study(args.lara, args.retrieval_cache)
    fm = fit_fold(study.questions, study.cases, c=args.c, fallback_max_hallu=args.fallback_max_hallu)
    s1, s2, _ = score_cases(fm, study.cases)
    refused, hallu = rule_inputs(fm, study.cases)
    per_model: dict[str, Thresholds] = {}
    for m in sorted({c.model for c in study.cases}):
        idx = [i for i, c in enumerate(study.cases) if c.model == m]
        t1, t2, max_hallu = choose_policy(
            [study.cases[i] for i in idx],
            [s1[i] for i in idx],
            [s2[i] for i in idx],
            [refused[i] for i in idx],
            [hallu[i] for i in idx],
            args.budget,
        )
        per_model[m] = Thresholds(lc=t1, lc_cached=0.5, fallback=t2, fallback_max_hallu=max_hallu)
    default = Thresholds(
        lc=round(statistics.median(t.lc for t in per_model.values()), 2),
        lc_cached=0.5,
        fallback=round(statistics.median(t.fallback for t in per_model.values()), 2),
        fallback_max_hallu=round(
            statistics.median(t.fallback_max_hallu or 0.0 for t in per_model.values()), 2
        ),
    )
    policy = RouterPolicy(
        before=fm.before,
        after=fm.after,
        thresholds=default,
        per_model=per_model,
        fallback_max_hallu=args.fallback_max_hallu,
        default_lc_advantage=fm.defaults,
        budget=args.budget,
        retrieval_defaults=mean_evidence([c.retrieval for c in study.cases if c.retrieval]),
        trained_on=(
            f"LaRA 32k published predictions: {len(study.questions)} questions x "
            f"{len(per_model)} models, deterministic judge, tokens by {study.tokenizer}, "
            f"retrieval evidence for {study.n_retrieval} questions"
        ),
    )
    fm.classifier.save(DEFAULT_WEIGHTS)
    policy.save(POLICY_PATH)
    profiles = {
        m: {"params_b": p.params_b, "lc_advantage": p.lc_advantage} for m, p in sorted(fm.profiles.items())
    }
    PROFILES_PATH.write_text(
        json.dumps(
            {
                "kind": "longqa-model-profiles",
                "note": "lc_advantage: LC minus RAG accuracy (mean over LaRA's 4 tasks, deterministic judge)",
                "models": profiles,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(
        f"wrote {DEFAULT_WEIGHTS.name}, {POLICY_PATH.name}, {PROFILES_PATH.name} "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    print(
        f"default thresholds {default}; per model: "
        + ", ".join(f"{m} {t.lc}/{t.fallback}/{t.fallback_max_hallu}" for m, t in per_model.items())
    )


if __name__ == "__main__":
    main()
