"""Tune the deterministic judge's thresholds on LaRA 32k, check them on LaRA 128k.

    .venv/bin/python benchmarks/eval_judge_tune.py [--lara ../shared/data/lara]
        [--lara128k /work/lara128k] [--cache /tmp/longqa-judge-features]

Each published answer's features (word recall and precision, numbers stated, refusal,
containment: ``eval.judge.answer_features``) are computed once per split and cached; a grid of
thresholds is then scored with numpy: Spearman rho and mean gap of overall accuracy against the
paper's table over the model x mode rows. The grid is searched on 32k only; 128k is scored for
the shipped thresholds and for the best 32k ones, so the check is on data the search never saw.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval.judge import DeterministicConfig, answer_features, decide  # noqa: E402
from eval.lara import TASKS, load_paper_table, load_predictions, load_questions  # noqa: E402
from eval.validate import spearman  # noqa: E402

GRID = {
    "short_words": (3, 4, 5, 6),
    "recall_weight": (0.3, 0.4, 0.5, 0.6),
    "short_overlap": (0.45, 0.5, 0.55, 0.6, 0.65),
    "long_overlap": (0.2, 0.25, 0.3, 0.35),
    "long_overlap_with_numbers": (0.05, 0.1, 0.15),
    "numbers_needed_long": (0.34, 0.5, 0.67),
    "verbose_ratio": (2.0, 3.0, 4.0),
    "verbose_penalty": (0.0, 0.05, 0.1),
}


class Split:
    """One split's answers as feature arrays, and the paper's table."""

    def __init__(self, root: Path, split: str, cache: Path) -> None:
        path = cache / f"features-{split}.pkl"
        questions = load_questions(root, split=split)
        self.paper = load_paper_table(root / f"paper_table_{split}.csv")
        self.questions = questions
        if path.is_file():
            keys, feats = pickle.loads(path.read_bytes())
        else:
            models = sorted({r.prediction_dir for r in self.paper})
            answers = load_predictions(root, models=models, questions=questions, split=split, partial=True)
            by_qid = {q.qid: q for q in questions}
            keys = sorted(answers)
            feats = []
            for k in keys:
                q = by_qid[k[2]]
                feats.append(answer_features(q.question, answers[k].prediction, q.answer, q.task))
            cache.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps((keys, feats)))
        self.keys, self.feats = keys, feats
        task_of = {q.qid: q.task for q in questions}
        groups = sorted({(m, mode, task_of[qid]) for m, mode, qid in keys})
        self.group_index = {g: i for i, g in enumerate(groups)}
        self.groups = groups
        self.g = np.array([self.group_index[(m, mode, task_of[qid])] for m, mode, qid in keys])
        self.count = np.bincount(self.g, minlength=len(groups))
        f = feats
        self.empty = np.array([x.empty for x in f])
        self.unans = np.array([x.unanswerable for x in f])
        self.pure = np.array([x.pure_refusal for x in f])
        self.contains = np.array([x.contains_gold for x in f])
        self.recall = np.array([x.recall for x in f])
        self.precision = np.array([x.precision for x in f])
        self.has_nums = np.array([x.numbers is not None for x in f])
        self.nums = np.array([x.numbers if x.numbers is not None else 0.0 for x in f])
        self.gold_words = np.array([x.gold_words for x in f])
        self.pred_words = np.array([x.pred_words for x in f])
        rows = [(r.prediction_dir, r.mode) for r in self.paper]
        self.rows = [r for r in rows if all((r[0], r[1], t) in self.group_index for t in TASKS)]
        self.paper_overall = np.array(
            [next(p.overall for p in self.paper if (p.prediction_dir, p.mode) == r) for r in self.rows]
        )
        self.row_groups = np.array([[self.group_index[(m, mode, t)] for t in TASKS] for m, mode in self.rows])

    def verdicts(self, c: DeterministicConfig) -> np.ndarray:
        overlap = c.recall_weight * self.recall + (1 - c.recall_weight) * self.precision
        overlap = overlap - c.verbose_penalty * (
            self.pred_words > c.verbose_ratio * np.maximum(self.gold_words, 1)
        )
        short = self.gold_words <= c.short_words
        ok_short = np.where(self.has_nums, self.nums >= 1.0, overlap >= c.short_overlap)
        ok_long = np.where(
            self.has_nums,
            (self.nums >= c.numbers_needed_long) & (overlap >= c.long_overlap_with_numbers),
            overlap >= c.long_overlap,
        )
        ok = np.where(short, ok_short, ok_long)
        ok = np.where(self.contains, True, ok)
        ok = np.where(self.pure & (self.recall < c.refusal_recall), False, ok)
        ok = np.where(self.unans, self.pure, ok)
        return np.where(self.empty, False, ok)

    def score(self, c: DeterministicConfig) -> tuple[float, float]:
        ok = self.verdicts(c)
        acc = 100.0 * np.bincount(self.g, weights=ok.astype(float), minlength=len(self.groups)) / self.count
        overall = acc[self.row_groups].mean(axis=1)
        rho = spearman(list(overall), list(self.paper_overall))
        return rho, float(np.abs(overall - self.paper_overall).mean())


def check_exact(split: Split, c: DeterministicConfig) -> None:
    """The numpy verdicts equal the judge's own on every answer (so the search scores the real judge)."""
    fast = split.verdicts(c)
    slow = np.array([decide(f, c).correct for f in split.feats])
    if not np.array_equal(fast, slow):
        raise SystemExit(f"numpy verdicts differ from decide() on {(fast != slow).sum()} answers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lara", type=Path, default=ROOT.parent / "shared" / "data" / "lara")
    ap.add_argument("--lara128k", type=Path, default=Path("/work/lara128k"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/longqa-judge-features"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    s32 = Split(args.lara, "32k", args.cache)
    s128 = Split(args.lara128k, "128k", args.cache) if args.lara128k.is_dir() else None
    print(f"features: {len(s32.keys)} answers at 32k, {len(s128.keys) if s128 else 0} at 128k "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    shipped = DeterministicConfig()
    check_exact(s32, shipped)
    names = list(GRID)
    results = []
    t1 = time.perf_counter()
    for values in itertools.product(*GRID.values()):
        c = replace(shipped, **dict(zip(names, values)))
        rho, mae = s32.score(c)
        results.append((round(rho, 4), -mae, values))
    results.sort(reverse=True)
    print(f"grid: {len(results)} configurations in {time.perf_counter() - t1:.0f} s")
    for label, c in [("shipped", shipped)] + [
        (f"32k best #{i + 1}", replace(shipped, **dict(zip(names, r[2])))) for i, r in enumerate(results[:5])
    ]:
        r32 = s32.score(c)
        line = f"{label:>12}: 32k rho {r32[0]:.3f} gap {r32[1]:.2f}"
        if s128 is not None:
            r128 = s128.score(c)
            line += f" | 128k rho {r128[0]:.3f} gap {r128[1]:.2f}"
        diff = {
            f.name: getattr(c, f.name) for f in fields(c) if getattr(c, f.name) != getattr(shipped, f.name)
        }
        print(f"{line} | {diff or asdict(c) if label == 'shipped' else diff}")
    if s128 is not None:
        # How stable the ranking is: the configurations at or above the shipped 32k rho, at 128k.
        top = [r for r in results if r[0] >= s32.score(shipped)[0]]
        r128s = [s128.score(replace(shipped, **dict(zip(names, r[2]))))[0] for r in top[:200]]
        print(
            f"{len(top)} of {len(results)} configurations reach the shipped 32k rho; their 128k rho: "
            f"min {min(r128s):.3f}, median {float(np.median(r128s)):.3f}, max {max(r128s):.3f} (first 200)"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
