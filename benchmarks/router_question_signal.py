"""Is there routing signal in the question beyond its task type? (issue 20; docs/router.md,
"Where the gap to the question oracle is not").

The question oracle (the better mode per question) is 8 points above the per-task oracle at
both lengths, so two cheap places were probed, on LaRA's published answers (no LLM runs),
fitted on one length and read on the other:

1. the task classifier: the per-task oracle with the *predicted* task instead of the true one;
2. the question's words: a ridge regression on TF-IDF n-grams of the question (plus the
   classifier's task probabilities), fitted on one split to each question's LC lean (the mean
   over the 13 models of LC right minus RAG right), read on the other split; within each task
   type, how well it orders the questions (Spearman).

    .venv/bin/python benchmarks/router_question_signal.py --lara128 ~/.cache/longqa/lara128k \\
        --study-cache ~/.cache/longqa/bench/studies
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.routing.qtype import train_qtype  # noqa: E402
from benchmarks.router_crosslength import load  # noqa: E402
from eval.lara import TASKS, per_task_oracle  # noqa: E402
from eval.router_study import PolicyResult, pick  # noqa: E402


def lean(study):  # type: ignore[no-untyped-def]
    """Questions and their LC lean: mean over models of (LC right) - (RAG right)."""
    d: dict[str, list[int]] = {}
    for c in study.cases:
        d.setdefault(c.q.qid, []).append(int(c.lc_ok) - int(c.rag_ok))
    qs = {q.qid: q for q in study.questions}
    ids = sorted(d)
    return [qs[i] for i in ids], np.array([np.mean(d[i]) for i in ids])


def oracle_accuracy(study, mode_of) -> float:  # type: ignore[no-untyped-def]
    """Mean over the paper's models of the mean task accuracy when each case takes mode_of(case)."""
    orc = per_task_oracle(study.paper)
    res = PolicyResult("per-task")
    for c in study.cases:
        if c.model in orc:
            res.add(c, pick(c, mode_of(orc[c.model], c)))
    return float(np.mean([res.accuracy(m) for m in sorted(res.choices)]))


def main() -> None:
    from scipy.sparse import csr_matrix, hstack
    from scipy.stats import pearsonr, spearmanr
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara32", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument("--lara128", type=Path, default=Path.home() / ".cache" / "longqa" / "lara128k")
    ap.add_argument("--study-cache", type=Path, default=None)
    args = ap.parse_args()
    studies = {
        "32k": load(args.lara32, "32k", args.study_cache),
        "128k": load(args.lara128, "128k", args.study_cache),
    }
    print(
        "| fitted on → read on | task classifier accuracy | per-task oracle, true task | predicted task |"
        " lean r (all) | lean r, task mean only | within-task Spearman (loc / reas / comp / hallu) |"
    )
    print("|---|---|---|---|---|---|---|")
    for src, tgt in (("32k", "128k"), ("128k", "32k")):
        sq, sy = lean(studies[src])
        tq, ty = lean(studies[tgt])
        clf = train_qtype([q.question for q in sq], [q.task for q in sq])
        pred = {q.qid: clf.predict(q.question) for q in sq + tq}
        top = {k: max(v.probs.items(), key=lambda kv: kv[1])[0] for k, v in pred.items()}
        acc = np.mean([top[q.qid] == q.task for q in tq])
        true_o = oracle_accuracy(studies[tgt], lambda o, c: o[c.q.task])
        pred_o = oracle_accuracy(studies[tgt], lambda o, c, top=top: o.get(top[c.q.qid], "rag"))

        def probs(qs, pred=pred):  # type: ignore[no-untyped-def]
            return csr_matrix(np.array([[pred[q.qid].probs.get(t, 0.0) for t in TASKS] for q in qs]))

        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit([q.question for q in sq])
        xs = hstack([vec.transform([q.question for q in sq]), probs(sq)]).tocsr()
        xt = hstack([vec.transform([q.question for q in tq]), probs(tq)]).tocsr()
        p = Ridge(alpha=3.0).fit(xs, sy).predict(xt)
        means = {t: sy[[i for i, q in enumerate(sq) if q.task == t]].mean() for t in TASKS}
        base = np.array([means[q.task] for q in tq])
        within = []
        for t in TASKS:
            ix = [i for i, q in enumerate(tq) if q.task == t]
            within.append(spearmanr(p[ix], ty[ix])[0] if ix else float("nan"))
        print(
            f"| {src} → {tgt} | {100 * acc:.1f}% | {true_o:.1f} | {pred_o:.1f} | {pearsonr(p, ty)[0]:.2f} | "
            f"{pearsonr(base, ty)[0]:.2f} | " + " / ".join(f"{w:.2f}" for w in within) + " |"
        )


if __name__ == "__main__":
    main()
