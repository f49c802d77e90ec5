"""Judge validation: judge LaRA's published predictions, compare with the paper's table.

The paper's ``overall`` is the mean of its four task accuracies; ours is computed
the same way, so rows compare like for like.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eval.judge import Judge
from eval.lara import TASKS, PaperRow, PublishedAnswer, Question


@dataclass(frozen=True)
class RowComparison:
    model: str
    mode: str
    ours: dict[str, float]  # task -> accuracy %
    ours_overall: float
    paper: dict[str, float]
    paper_overall: float


@dataclass(frozen=True)
class JudgeValidation:
    judge: str
    rows: tuple[RowComparison, ...]
    spearman_overall: float  # over the model x mode rows
    mae_overall: float  # mean |ours - paper| of overall accuracy, percentage points
    spearman_cells: float  # over model x mode x task cells
    mae_cells: float
    n_items: int


def rank(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    if n < 2:
        return float("nan")
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = math.sqrt(sum((x - ma) ** 2 for x in a))
    vb = math.sqrt(sum((y - mb) ** 2 for y in b))
    return cov / (va * vb) if va and vb else float("nan")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        raise ValueError(f"spearman needs two sequences of the same length, got {len(a)} and {len(b)}")
    return pearson(rank(a), rank(b))


def judge_answers(
    judge: Judge, questions: Sequence[Question], answers: Mapping[tuple[str, str, str], PublishedAnswer]
) -> dict[tuple[str, str, str], bool]:
    """Verdict for every published answer, keyed like ``answers``."""
    by_qid = {q.qid: q for q in questions}
    out: dict[tuple[str, str, str], bool] = {}
    for key, a in answers.items():
        q = by_qid[a.qid]
        out[key] = judge.judge(q.question, a.prediction, q.answer, q.task).correct
    return out


def task_accuracy(
    verdicts: Mapping[tuple[str, str, str], bool], questions: Sequence[Question]
) -> dict[tuple[str, str], dict[str, float]]:
    """Accuracy (%) per (model, mode) and task; 'overall' is the mean of the task accuracies."""
    task_of = {q.qid: q.task for q in questions}
    counts: dict[tuple[str, str], dict[str, list[int]]] = {}
    for (model, mode, qid), ok in verdicts.items():
        c = counts.setdefault((model, mode), {}).setdefault(task_of[qid], [0, 0])
        c[0] += int(ok)
        c[1] += 1
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, per in counts.items():
        acc = {t: 100.0 * per[t][0] / per[t][1] for t in TASKS if t in per}
        acc["overall"] = sum(acc.values()) / len(acc)
        out[key] = acc
    return out


def compare_with_paper(
    judge_name: str, ours: Mapping[tuple[str, str], dict[str, float]], paper: Sequence[PaperRow], n_items: int
) -> JudgeValidation:
    rows = []
    for p in paper:
        key = (p.prediction_dir, p.mode)
        if key not in ours:
            continue
        o = ours[key]
        rows.append(
            RowComparison(
                p.prediction_dir, p.mode, {t: o[t] for t in TASKS}, o["overall"], p.accuracy, p.overall
            )
        )
    if len(rows) < 2:
        raise ValueError("fewer than two model x mode rows in common with the paper's table")
    a = [r.ours_overall for r in rows]
    b = [r.paper_overall for r in rows]
    ca = [r.ours[t] for r in rows for t in TASKS]
    cb = [r.paper[t] for r in rows for t in TASKS]
    return JudgeValidation(
        judge=judge_name,
        rows=tuple(rows),
        spearman_overall=round(spearman(a, b), 4),
        mae_overall=round(sum(abs(x - y) for x, y in zip(a, b)) / len(a), 2),
        spearman_cells=round(spearman(ca, cb), 4),
        mae_cells=round(sum(abs(x - y) for x, y in zip(ca, cb)) / len(ca), 2),
        n_items=n_items,
    )
