"""Metrics over result rows: per mode and task type, routing decisions, the oracle, judge agreement."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from eval.judge import Agreement, agreement
from eval.runner import ResultRow

ORACLE_LABELS = ("lc", "rag", "both", "neither")


@dataclass(frozen=True)
class CellMetrics:
    """One mode (and task type, or all tasks) over the rows that were answered."""

    mode: str
    task: str
    n: int  # answered rows
    errors: int
    accuracy: float | None  # % judged correct (deterministic judge)
    llm_accuracy: float | None  # % judged correct by the LLM judge, when it ran
    citation_verified: float | None  # % of citations verified
    answers_with_verified: float | None  # % of answers with at least one verified citation
    retrieval_recall: float | None  # % of locatable gold evidence in the retrieved passages
    recall_n: int
    prompt_tokens: float | None  # mean per answer
    completion_tokens: float | None
    latency_mean: float | None  # seconds
    latency_p50: float | None
    latency_p90: float | None
    lc_share: float | None  # % answered from the whole document (routed runs)


@dataclass(frozen=True)
class RoutingMetrics:
    n: int
    chose_lc: int
    fallbacks: int
    reasons: dict[str, int]  # first clause of the reason -> count
    confusion: dict[str, dict[str, int]]  # router's choice -> oracle label -> count
    oracle_accuracy: float | None  # % of items where rag or lc was right (both were run)
    routed_accuracy: float | None  # % on the same items
    oracle_n: int


@dataclass(frozen=True)
class Metrics:
    cells: tuple[CellMetrics, ...]
    routing: RoutingMetrics | None
    judges: Agreement | None
    tasks: tuple[str, ...]
    modes: tuple[str, ...]
    errors: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)  # (item, mode, reason)

    def cell(self, mode: str, task: str = "all") -> CellMetrics | None:
        return next((c for c in self.cells if c.mode == mode and c.task == task), None)


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 2) if den else None


def _mean(xs: Sequence[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def _quantile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))], 3)


def cell_metrics(mode: str, task: str, rows: Sequence[ResultRow]) -> CellMetrics:
    ok = [r for r in rows if r.ok]
    judged = [r for r in ok if r.correct is not None]
    llm = [r for r in ok if r.llm_correct is not None]
    cites = sum(r.citations for r in ok)
    rec = [r for r in ok if r.retrieval_hit is not None]
    secs = [r.seconds for r in ok]
    return CellMetrics(
        mode=mode,
        task=task,
        n=len(ok),
        errors=len(rows) - len(ok),
        accuracy=_pct(sum(bool(r.correct) for r in judged), len(judged)),
        llm_accuracy=_pct(sum(bool(r.llm_correct) for r in llm), len(llm)),
        citation_verified=_pct(sum(r.verified for r in ok), cites),
        answers_with_verified=_pct(sum(r.verified > 0 for r in ok), len(ok)),
        retrieval_recall=_pct(sum(bool(r.retrieval_hit) for r in rec), len(rec)),
        recall_n=len(rec),
        prompt_tokens=_mean([r.prompt_tokens for r in ok]),
        completion_tokens=_mean([r.completion_tokens for r in ok]),
        latency_mean=_mean(secs),
        latency_p50=_quantile(secs, 0.5),
        latency_p90=_quantile(secs, 0.9),
        lc_share=_pct(sum(r.mode == "lc" for r in ok), len(ok)),
    )


def oracle_label(rag: ResultRow, lc: ResultRow) -> str:
    if lc.correct and not rag.correct:
        return "lc"
    if rag.correct and not lc.correct:
        return "rag"
    return "both" if lc.correct else "neither"


def routing_metrics(rows: Sequence[ResultRow]) -> RoutingMetrics | None:
    auto = [r for r in rows if r.mode_requested == "auto" and r.ok]
    if not auto:
        return None
    by = {(r.item_id, r.mode_requested): r for r in rows if r.ok}
    reasons: dict[str, int] = {}
    for r in auto:
        head = r.route_reason.split(";")[0].split("(")[0].strip() or "(none)"
        reasons[head] = reasons.get(head, 0) + 1
    confusion: dict[str, dict[str, int]] = {m: dict.fromkeys(ORACLE_LABELS, 0) for m in ("rag", "lc")}
    oracle_ok = routed_ok = n = 0
    for r in auto:
        rag, lc = by.get((r.item_id, "rag")), by.get((r.item_id, "lc"))
        if rag is None or lc is None:
            continue
        n += 1
        confusion.setdefault(r.mode, dict.fromkeys(ORACLE_LABELS, 0))[oracle_label(rag, lc)] += 1
        oracle_ok += bool(rag.correct or lc.correct)
        routed_ok += bool(r.correct)
    return RoutingMetrics(
        n=len(auto),
        chose_lc=sum(r.mode == "lc" for r in auto),
        fallbacks=sum(r.fallback for r in auto),
        reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        confusion=confusion,
        oracle_accuracy=_pct(oracle_ok, n),
        routed_accuracy=_pct(routed_ok, n),
        oracle_n=n,
    )


def compute(rows: Sequence[ResultRow]) -> Metrics:
    modes = tuple(m for m in ("rag", "lc", "auto") if any(r.mode_requested == m for r in rows))
    modes += tuple(sorted({r.mode_requested for r in rows} - set(modes)))
    tasks = tuple(sorted({r.task or "(none)" for r in rows}))
    cells = []
    for m in modes:
        mine = [r for r in rows if r.mode_requested == m]
        cells.append(cell_metrics(m, "all", mine))
        for t in tasks:
            cells.append(cell_metrics(m, t, [r for r in mine if (r.task or "(none)") == t]))
    both = [r for r in rows if r.ok and r.correct is not None and r.llm_correct is not None]
    judges = agreement([bool(r.correct) for r in both], [bool(r.llm_correct) for r in both]) if both else None
    errors = tuple((r.item_id, r.mode_requested, r.error) for r in rows if r.error)
    return Metrics(tuple(cells), routing_metrics(rows), judges, tasks, modes, errors)
