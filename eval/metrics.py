"""Metrics over result rows: per mode and task type, routing decisions, the oracle, judge agreement."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from eval.judge import Agreement, agreement
from eval.runner import ResultRow

ORACLE_LABELS = ("lc", "rag", "both", "neither")
# Document length buckets, in the generator's tokens: (label, upper bound exclusive).
LENGTH_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<8k", 8_000),
    ("8-32k", 32_000),
    ("32-128k", 128_000),
    (">128k", float("inf")),
)


def length_bucket(tokens: int) -> str:
    """The bucket of a document of ``tokens`` tokens ("?" when its length is unknown)."""
    if tokens <= 0:
        return "?"
    return next(label for label, top in LENGTH_BUCKETS if tokens < top)


@dataclass(frozen=True)
class CellMetrics:
    """One mode (and task type, or all tasks) over the rows that were answered."""

    mode: str
    task: str
    n: int  # answered rows
    errors: int
    accuracy: float | None  # % judged correct (deterministic judge)
    llm_accuracy: float | None  # % judged correct by the LLM judge, when it ran
    citation_verified: float | None  # % of the shown citations verified
    citations: int  # shown citations
    answers_with_citation: float | None  # % of answers showing at least one citation
    citation_verified_first: float | None  # % verified before the re-check (rows that recorded it)
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
class JudgeAgreement:
    """The deterministic and the LLM judge on the same open-ended answers of one task type."""

    task: str
    n: int
    agree: float  # %
    kappa: float
    deterministic: float  # % judged correct
    llm: float
    det_only: int  # right for the deterministic judge only
    llm_only: int


@dataclass(frozen=True)
class Metrics:
    cells: tuple[CellMetrics, ...]
    routing: RoutingMetrics | None
    judges: Agreement | None
    tasks: tuple[str, ...]
    modes: tuple[str, ...]
    errors: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)  # (item, mode, reason)
    lengths: tuple[CellMetrics, ...] = ()  # per mode and length bucket (``task`` holds the bucket)
    buckets: tuple[str, ...] = ()  # the length buckets that hold rows, shortest first
    judge_table: tuple[JudgeAgreement, ...] = ()  # --judge both: per task type and overall
    mc: dict[str, tuple[int, int]] = field(default_factory=dict)  # mode -> (MC answered, no choice read)

    def cell(self, mode: str, task: str = "all") -> CellMetrics | None:
        return next((c for c in self.cells if c.mode == mode and c.task == task), None)

    def length_cell(self, mode: str, bucket: str) -> CellMetrics | None:
        return next((c for c in self.lengths if c.mode == mode and c.task == bucket), None)


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
    first = [r for r in ok if r.first_citations is not None]
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
        citations=cites,
        answers_with_citation=_pct(sum(r.citations > 0 for r in ok), len(ok)),
        citation_verified_first=_pct(
            sum(r.first_verified or 0 for r in first), sum(r.first_citations or 0 for r in first)
        ),
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
    order = [label for label, _ in LENGTH_BUCKETS] + ["?"]
    buckets = tuple(b for b in order if any(length_bucket(r.doc_tokens) == b for r in rows if r.ok))
    lengths = tuple(
        cell_metrics(
            m, b, [r for r in rows if r.mode_requested == m and r.ok and length_bucket(r.doc_tokens) == b]
        )
        for m in modes
        for b in buckets
    )
    return Metrics(
        tuple(cells),
        routing_metrics(rows),
        judges,
        tasks,
        modes,
        errors,
        lengths,
        buckets,
        judge_table(both),
        {
            m: (
                sum(1 for r in rows if r.ok and r.mc and r.mode_requested == m),
                sum(1 for r in rows if r.ok and r.mc and r.mode_requested == m and not r.choice),
            )
            for m in modes
            if any(r.ok and r.mc and r.mode_requested == m for r in rows)
        },
    )


def judge_table(rows: Sequence[ResultRow]) -> tuple[JudgeAgreement, ...]:
    """Agreement of the two judges per task type and over all rows that both judged."""
    if not rows:
        return ()
    groups: dict[str, list[ResultRow]] = {}
    for r in rows:
        groups.setdefault(r.task or "(none)", []).append(r)
    out = []
    for task, mine in [*sorted(groups.items()), ("all", list(rows))]:
        a = agreement([bool(r.correct) for r in mine], [bool(r.llm_correct) for r in mine])
        out.append(
            JudgeAgreement(
                task=task,
                n=a.n,
                agree=round(100 * a.agree, 1),
                kappa=a.kappa,
                deterministic=_pct(sum(bool(r.correct) for r in mine), len(mine)) or 0.0,
                llm=_pct(sum(bool(r.llm_correct) for r in mine), len(mine)) or 0.0,
                det_only=sum(bool(r.correct) and not r.llm_correct for r in mine),
                llm_only=sum(bool(r.llm_correct) and not r.correct for r in mine),
            )
        )
    return tuple(out)
