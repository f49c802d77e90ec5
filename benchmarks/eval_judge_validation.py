"""Validate the judges on LaRA's published 32k predictions against the paper's LLM-judge table.

    .venv/bin/python benchmarks/eval_judge_validation.py [--lara ../shared/data/lara]
        [--llm-sample 40 --llm-model qwen2.5-coder-1.5b]

Prints, for the deterministic judge (fitted thresholds, and the hand-set ones before fitting),
the Spearman rank correlation and the mean absolute gap over the model x mode rows of
paper_table_32k.csv (overall accuracy) and over the model x mode x task cells. With
--llm-sample, an LLM judge also rates a stratified sample of answers, and its agreement with
the deterministic judge is reported.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval.judge import INITIAL_CONFIG, DeterministicJudge, LLMJudge, agreement  # noqa: E402
from eval.lara import TASKS, load_paper_table, load_predictions, load_questions  # noqa: E402
from eval.validate import JudgeValidation, compare_with_paper, judge_answers, task_accuracy  # noqa: E402


def show(v: JudgeValidation, label: str, rows: bool) -> None:
    if rows:
        print(f"\n| model | mode | {' | '.join(TASKS)} | overall (ours / paper) |")
        print("|---|---|" + "---|" * (len(TASKS) + 1))
        for r in v.rows:
            cells = " | ".join(f"{r.ours[t]:.1f} / {r.paper[t]:.1f}" for t in TASKS)
            print(f"| {r.model} | {r.mode} | {cells} | **{r.ours_overall:.1f}** / {r.paper_overall:.1f} |")
    print(
        f"\n{label}: {len(v.rows)} model x mode rows, {v.n_items} judged answers. Overall accuracy: "
        f"Spearman rho {v.spearman_overall:.3f}, mean |gap| {v.mae_overall:.2f} points. "
        f"Per task cells ({len(v.rows) * len(TASKS)}): rho {v.spearman_cells:.3f}, "
        f"mean |gap| {v.mae_cells:.2f}."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument(
        "--split",
        default="32k",
        help="32k, or 128k with --lara pointing at the unpacked lara-128k.tar.gz",
    )
    ap.add_argument("--llm-sample", type=int, default=0, help="answers for the LLM judge (0: none)")
    ap.add_argument("--llm-model", default="qwen2.5-coder-1.5b")
    args = ap.parse_args()
    t0 = time.perf_counter()
    questions = load_questions(args.lara, split=args.split)
    paper = load_paper_table(args.lara / f"paper_table_{args.split}.csv")
    models = sorted({r.prediction_dir for r in paper})
    answers = load_predictions(args.lara, models=models, questions=questions, split=args.split, partial=True)
    det = DeterministicJudge()
    verdicts = judge_answers(det, questions, answers)
    per_answer = (time.perf_counter() - t0) / len(verdicts)
    show(
        compare_with_paper(det.name, task_accuracy(verdicts, questions), paper, len(verdicts)), "fitted", True
    )
    before = judge_answers(DeterministicJudge(INITIAL_CONFIG), questions, answers)
    show(
        compare_with_paper("initial", task_accuracy(before, questions), paper, len(before)), "hand-set", False
    )
    print(f"\n({time.perf_counter() - t0:.0f} s; {per_answer * 1000:.2f} ms per judged answer)")

    if args.llm_sample:
        from app.factories import build_generator
        from app.settings import Settings

        s = Settings()
        s.llm.model = args.llm_model
        judge = LLMJudge(build_generator(s))
        by_qid = {q.qid: q for q in questions}
        rng = random.Random(0)
        keys = sorted(answers)
        strata: dict[str, list] = {t: [k for k in keys if by_qid[k[2]].task == t] for t in TASKS}  # type: ignore[type-arg]
        sample = [k for t in TASKS for k in rng.sample(strata[t], args.llm_sample // len(TASKS))]
        t1 = time.perf_counter()
        llm = []
        for k in sample:
            q = by_qid[k[2]]
            llm.append(judge.judge(q.question, answers[k].prediction, q.answer, q.task).correct)
        a = agreement([verdicts[k] for k in sample], llm)
        print(
            f"\nLLM judge {judge.name} on {a.n} sampled answers (stratified by task): agrees with the "
            f"deterministic judge on {a.agree:.1%} (Cohen's kappa {a.kappa:.2f}); LLM says correct "
            f"{sum(llm) / len(llm):.1%}, deterministic {sum(verdicts[k] for k in sample) / len(sample):.1%}; "
            f"{(time.perf_counter() - t1) / len(sample):.1f} s per judgment"
        )


if __name__ == "__main__":
    main()
