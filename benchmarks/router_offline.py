"""Offline router study on LaRA 32k: route each question, take the published answer of the chosen
mode, judge it with the deterministic judge. No LLM runs. Cross-validated by document.

    .venv/bin/python benchmarks/router_offline.py [--lara ../shared/data/lara]
        [--retrieval-cache ~/.cache/longqa/bench/lara_retrieval.json] [--budget 0.4] [--json out.json]

Prints a markdown table (docs/router.md holds the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# One BLAS/OpenMP thread: the logistic-regression fits are faster so (small problems) and the
# chosen thresholds do not change with the machine's thread count (they did, in the last digit).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval.lara import TASKS, per_task_oracle  # noqa: E402
from eval.router_study import (  # noqa: E402
    PolicyResult,
    choose_policy,
    decide,
    document_folds,
    fit_fold,
    load_study,
    pick,
    rule_inputs,
    score_cases,
)

DEFAULT_LARA = ROOT.parent / "shared" / "data" / "lara"
FALLBACK_MAX_HALLU = 0.5


def main() -> None:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=DEFAULT_LARA)
    ap.add_argument("--retrieval-cache", type=Path, default=None)
    ap.add_argument("--budget", type=float, default=0.40, help="prompt tokens allowed, x always-LC")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--c", type=float, default=1.0, help="inverse regularisation of the policy")
    ap.add_argument(
        "--per-fold-budget",
        action="store_true",
        help="choose thresholds that stay within the budget on each training fold's documents, not only "
        "over all training documents (a stricter constraint: fewer held-out overspends, lower accuracy)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write per-model figures here")
    args = ap.parse_args()
    t0 = time.perf_counter()

    study = load_study(args.lara, args.retrieval_cache)
    questions, cases, paper = study.questions, study.cases, study.paper
    oracle = per_task_oracle(paper)
    print(
        f"{len(questions)} questions, {len({q.doc_key for q in questions})} documents, "
        f"{len({c.model for c in cases})} models; tokens by {study.tokenizer}; retrieval evidence for "
        f"{study.n_retrieval} questions; judged in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )

    names = [
        "always-lc",
        "always-rag",
        "task-oracle",
        "self-route",
        "rules",
        "learned",
        "routed",
        "question-oracle",
    ]
    results = {n: PolicyResult(n) for n in names}
    folds = document_folds(questions, args.folds)
    fold_of = {d: j for j, docs in enumerate(folds) for d in docs}
    chosen: dict[str, list[tuple[float, float, float]]] = {}
    for k, test_docs in enumerate(folds):
        train = [c for c in cases if c.q.doc_key not in test_docs]
        test = [c for c in cases if c.q.doc_key in test_docs]
        fm = fit_fold(questions, train, c=args.c, fallback_max_hallu=FALLBACK_MAX_HALLU)
        tr1, tr2, _ = score_cases(fm, train)
        te1, te2, _ = score_cases(fm, test)
        tr_ref, tr_hal = rule_inputs(fm, train)
        te_ref, te_hal = rule_inputs(fm, test)
        # Per-task choice from training folds, for models missing from the paper's table.
        train_choice = {}
        for m in {c.model for c in cases}:
            for t in TASKS:
                cs = [c for c in train if c.model == m and c.q.task == t]
                train_choice[(m, t)] = (
                    "lc" if sum(c.lc_ok for c in cs) >= sum(c.rag_ok for c in cs) else "rag"
                )
        for m in sorted({c.model for c in cases}):
            tri = [i for i, c in enumerate(train) if c.model == m]
            sub = [train[i] for i in tri]
            pick1 = [tr1[i] for i in tri]
            pick2 = [tr2[i] for i in tri]
            refused = [tr_ref[i] for i in tri]
            hallu = [tr_hal[i] for i in tri]
            # With --per-fold-budget the budget must hold on each training fold's documents.
            groups = [fold_of[c.q.doc_key] for c in sub] if args.per_fold_budget else None
            # Thresholds and the Self-Route rule's P(unanswerable) limit, on training documents only.
            f1, f2, f_mh = choose_policy(sub, pick1, pick2, refused, hallu, 10.0)
            b1, b2, b_mh = choose_policy(sub, pick1, pick2, refused, hallu, args.budget, groups=groups)
            chosen.setdefault(m, []).append((b1, b2, b_mh))
            for i, c in enumerate(test):
                if c.model != m:
                    continue
                qt = fm.qtypes[c.q.qid]
                fb = qt.probs["hallu"] < FALLBACK_MAX_HALLU
                results["always-lc"].add(c, pick(c, "lc"))
                results["always-rag"].add(c, pick(c, "rag"))
                task_mode = oracle[m][c.q.task] if m in oracle else train_choice[(m, c.q.task)]
                results["task-oracle"].add(c, pick(c, task_mode))
                results["self-route"].add(c, pick(c, "rag", True, fb))
                label = qt.label in ("comp", "reasoning")
                results["rules"].add(c, pick(c, "lc" if label else "rag", True, fb))
                results["learned"].add(c, decide(c, te1[i], te2[i], te_ref[i] and te_hal[i] < f_mh, f1, f2))
                results["routed"].add(c, decide(c, te1[i], te2[i], te_ref[i] and te_hal[i] < b_mh, b1, b2))
                best = "lc" if c.lc_ok and not c.rag_ok else "rag"
                results["question-oracle"].add(c, pick(c, best))
        print(f"fold {k + 1}: {len(test_docs)} test documents", file=sys.stderr)

    models = sorted(results["always-lc"].choices)
    paper_by = {(r.prediction_dir, r.mode): r for r in paper}
    print(
        f"\nPer model, accuracy % (mean of the 4 task accuracies, deterministic judge; {args.folds}-fold CV "
        "grouped by document); tokens = prompt tokens x always-LC\n"
    )
    head = [
        "model",
        "LC",
        "RAG",
        "per-task oracle (tokens)",
        "Self-Route",
        "rules + SR",
        "learned, no budget",
        f"**routed, ≤{args.budget:.0%} tokens**",
        "tokens",
        "routed − oracle",
        "question oracle",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    summary = {}

    def cell(n: str, m: str | None = None) -> str:
        if m is None:
            acc = float(np.mean([results[n].accuracy(x) for x in models]))
            tok = float(np.mean([results[n].token_ratio(x) for x in models]))
        else:
            acc, tok = results[n].accuracy(m), results[n].token_ratio(m)
        return f"{acc:.1f} ({tok:.0%})"

    for m in models:
        r = {n: results[n].accuracy(m) for n in names}
        tok = {n: results[n].token_ratio(m) for n in names}
        star = "" if m in oracle else "*"
        print(
            f"| {m} | {r['always-lc']:.1f} | {r['always-rag']:.1f} | {cell('task-oracle', m)}{star} | "
            f"{cell('self-route', m)} | {cell('rules', m)} | {cell('learned', m)} | **{r['routed']:.1f}** | "
            f"{tok['routed']:.0%} | {r['routed'] - r['task-oracle']:+.1f} | {r['question-oracle']:.1f} |"
        )
        summary[m] = {
            "accuracy": r,
            "token_ratio": tok,
            "task_accuracy": {n: {t: results[n].task_accuracy(m, t) for t in TASKS} for n in names},
            "lc_share": {n: results[n].lc_share(m) for n in names},
            "thresholds": chosen[m],
            "paper": {mode: paper_by[(m, mode)].overall for mode in ("lc", "rag") if (m, mode) in paper_by},
        }
    mean = {n: float(np.mean([results[n].accuracy(m) for m in models])) for n in names}
    mtok = {n: float(np.mean([results[n].token_ratio(m) for m in models])) for n in names}
    print(
        f"| **mean** | {mean['always-lc']:.1f} | {mean['always-rag']:.1f} | {cell('task-oracle')} | "
        f"{cell('self-route')} | {cell('rules')} | {cell('learned')} | **{mean['routed']:.1f}** | "
        f"{mtok['routed']:.0%} | {mean['routed'] - mean['task-oracle']:+.1f} | "
        f"{mean['question-oracle']:.1f} |"
    )
    beats = sum(results["routed"].accuracy(m) > results["task-oracle"].accuracy(m) for m in models)
    ties = sum(abs(results["routed"].accuracy(m) - results["task-oracle"].accuracy(m)) < 0.05 for m in models)
    free = sum(results["learned"].accuracy(m) > results["task-oracle"].accuracy(m) for m in models)
    over = [m for m in models if results["routed"].token_ratio(m) > args.budget]
    over_text = ", ".join(f"{m} ({results['routed'].token_ratio(m):.1%})" for m in over)
    within = sum(
        results["routed"].accuracy(m) > results["task-oracle"].accuracy(m) and m not in over for m in models
    )
    print(
        f"\nrouted (≤{args.budget:.0%} tokens) beats the per-task oracle for {beats}/{len(models)} models "
        f"(ties: {ties}; {within}/{len(models)} also within the budget on their test documents); without a "
        f"budget for {free}/{len(models)}. Models over the token budget on test documents: "
        f"{over_text or 'none'}. "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps({"models": summary, "mean": mean, "mean_tokens": mtok}, indent=1))


if __name__ == "__main__":
    main()
