"""Batch question answering: many questions over a folder of documents, one table out.

``run_batch`` ingests the folder once (unchanged files are skipped by content hash), expands
the questions into rows (a question tied to a document, or one row per document), and answers
the rows that are not finished yet. Every finished row is appended to a journal next to the
output (``<out>.journal.jsonl``, flushed and fsynced row by row), keyed by a stable row key
(question + document content + requested mode), so an interrupted run picks up where it
stopped and never answers a finished row twice. A failed row is recorded with its reason and
asked again only with ``retry_failed``. The output table is rewritten from the journal at the
end of every run, in input order.

Throughput: rows run grouped by document, so questions on the same document follow each other
and reuse its KV prefix (llama.cpp keeps the last prompt; vLLM's automatic prefix caching keeps
many). With the OpenAI-compatible backend, ``concurrency`` requests are in flight at once;
the embedded llama.cpp model answers one at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from app.answer_json import answer_json
from app.batch.files import (
    QuestionFile,
    QuestionFileError,
    QuestionRow,
    check_output_path,
    read_questions,
    write_table,
)
from app.ingest import IngestReport, stored_file
from app.ingest import Progress as IngestProgress
from app.locations import fmt_time
from app.service import QAService
from pipeline.errors import LongqaError, NothingIngested
from pipeline.types import Answer, Mode

BASE_COLUMNS = (
    "row",
    "id",
    "doc",
    "doc_id",
    "question",
    "requested_mode",
    "status",
    "answer",
    "mode",
    "reason",
    "citations",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "seconds",
    "model",
    "engine",
    "error",
    "answered_at",
    "key",
)


class BatchError(LongqaError, ValueError):
    """The run cannot start (no documents, unreadable questions file, output busy)."""


@dataclass(frozen=True)
class DocRef:
    doc_id: str
    label: str  # path relative to the documents folder, as shown in the output
    source_path: str


@dataclass(frozen=True)
class Task:
    """One output row: a question about one document, in one requested mode."""

    order: int
    row: QuestionRow
    doc: DocRef | None
    mode: Mode
    key: str
    error: str = ""  # the row cannot be asked: bad input or unknown document


@dataclass(frozen=True)
class RowResult:
    """What the journal keeps for a finished row (answered or failed)."""

    key: str
    status: str  # "ok" or "failed"
    answer: str = ""
    mode: str = ""
    reason: str = ""
    citations: tuple[dict[str, Any], ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    model: str = ""
    engine: str = ""
    error: str = ""
    answered_at: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowResult:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["citations"] = tuple(kw.get("citations") or ())
        return cls(**kw)


@dataclass(frozen=True)
class BatchOptions:
    questions: Path
    out: Path
    docs: Path | None = None  # None: every document in the library
    mode: Mode = "auto"
    concurrency: int = 1
    retry_failed: bool = False
    max_consecutive_failures: int = 5  # stop early when the backend is clearly down


@dataclass(frozen=True)
class BatchProgress:
    done: int  # rows finished, this run and earlier
    total: int  # rows to finish (invalid input rows excluded)
    answered: int  # answered in this run
    failed: int  # failed in this run
    elapsed_s: float
    per_minute: float  # questions answered per minute in this run
    eta_s: float | None
    current: str  # the last row finished


@dataclass(frozen=True)
class BatchSummary:
    out: str
    rows: int  # rows in the output table
    answered: int  # answered ok in this run
    failed: int  # failed in this run
    resumed: int  # finished in an earlier run, not asked again
    failed_before: int  # failed earlier and not retried (use retry_failed)
    invalid: int  # rows that could not be asked: bad input, unknown document
    pending: int  # not answered (interrupted or stopped)
    seconds: float
    per_minute: float
    modes: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    concurrency: int = 1
    peak_in_flight: int = 0
    interrupted: bool = False
    stopped: str = ""  # why the run stopped early, if it did
    notes: tuple[str, ...] = ()

    def text(self) -> str:
        parts = [f"{self.rows} rows: {self.answered} answered now"]
        if self.resumed:
            parts.append(f"{self.resumed} already done")
        if self.failed or self.failed_before:
            parts.append(f"{self.failed + self.failed_before} failed (rerun with --retry-failed)")
        if self.invalid:
            parts.append(f"{self.invalid} invalid (see the error column)")
        if self.pending:
            parts.append(f"{self.pending} not answered yet (rerun the same command to continue)")
        modes = ", ".join(f"{n} {m.upper()}" for m, n in sorted(self.modes.items()))
        line = "; ".join(parts)
        line += f". {modes}." if modes else "."
        if self.answered or self.failed:
            line += (
                f" {self.per_minute:.1f} questions/min over {fmt_time(self.seconds)}"
                f" ({self.peak_in_flight} in flight at peak, {self.concurrency} allowed),"
                f" {self.tokens:,} tokens."
            )
        return line + f" Wrote {self.out}."


# -- documents and rows -----------------------------------------------------------------------------


class DocumentSet:
    """The documents a run asks about, found by doc id, relative path, file name or stem."""

    def __init__(self, docs: Sequence[DocRef], failed: dict[str, str] | None = None) -> None:
        self.docs = sorted(docs, key=lambda d: d.label)
        self.failed = failed or {}  # label -> why it could not be ingested
        self._by: dict[str, list[DocRef]] = {}
        for d in self.docs:
            p = Path(d.label)
            for k in {d.doc_id, d.label, p.name, p.stem, p.name.casefold(), p.stem.casefold()}:
                self._by.setdefault(k, []).append(d)

    def find(self, ref: str) -> DocRef | str:
        """The document ``ref`` names, or a one-line reason why none matches."""
        ref = ref.strip().replace("\\", "/")
        for key in (ref, ref.casefold(), Path(ref).name, Path(ref).name.casefold()):
            hits = {d.doc_id: d for d in self._by.get(key, [])}
            if len(hits) == 1:
                return next(iter(hits.values()))
            if len(hits) > 1:
                names = ", ".join(sorted(d.label for d in hits.values()))
                return f"document '{ref}' is ambiguous ({names}); give its path relative to the folder"
        for label, why in self.failed.items():
            if ref in (label, Path(label).name, Path(label).stem):
                return f"document '{ref}' could not be ingested: {why}"
        known = ", ".join(d.label for d in self.docs[:5]) + (", ..." if len(self.docs) > 5 else "")
        return f"unknown document '{ref}'; known documents: {known}"


def row_key(question: str, doc_id: str, mode: str) -> str:
    """Stable key of a row: the question, the document's content (its id) and the requested mode."""
    raw = json.dumps([" ".join(question.split()), doc_id, mode], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def make_tasks(qf: QuestionFile, docs: DocumentSet, default_mode: Mode) -> list[Task]:
    """Rows in output order: input order; a question without a document, once per document."""
    tasks: list[Task] = []
    for row in qf.rows:
        mode: Mode = row.mode or default_mode  # type: ignore[assignment]
        if row.error:
            tasks.append(
                Task(len(tasks), row, None, mode, row_key(row.question, f"line:{row.line}", mode), row.error)
            )
            continue
        if row.doc:
            found = docs.find(row.doc)
            if isinstance(found, str):
                key = row_key(row.question, f"ref:{row.doc}", mode)
                tasks.append(Task(len(tasks), row, None, mode, key, f"line {row.line}: {found}"))
            else:
                tasks.append(Task(len(tasks), row, found, mode, row_key(row.question, found.doc_id, mode)))
            continue
        for d in docs.docs:
            tasks.append(Task(len(tasks), row, d, mode, row_key(row.question, d.doc_id, mode)))
    return tasks


IngestFn = Callable[[list[Path], Callable[[IngestProgress], None] | None], IngestReport]


def collect_documents(
    svc: QAService,
    folder: Path | None,
    ingest_progress: Callable[[IngestProgress], None] | None = None,
    ingest: IngestFn | None = None,
) -> tuple[DocumentSet, list[str]]:
    """Ingest ``folder`` (a no-op for unchanged files) and return its documents, with notes."""
    notes: list[str] = []
    if folder is None:
        library = [DocRef(d.doc_id, Path(d.source_path).name, d.source_path) for d in svc.documents()]
        if not library:
            raise BatchError(NothingIngested.reason, "pass --docs FOLDER or run 'longqa ingest PATH' first")
        return DocumentSet(library), notes
    if not folder.exists():
        raise BatchError(f"documents folder '{folder}' does not exist")
    root = folder.resolve()
    report = ingest([folder], ingest_progress) if ingest else svc.ingest([folder], ingest_progress)
    base = root if root.is_dir() else root.parent

    def label(path: str) -> str:
        p = Path(path).resolve()
        return p.relative_to(base).as_posix() if p.is_relative_to(base) else p.name

    failed = {label(p): why for p, why in report.failed}
    for why in failed.values():
        notes.append(f"not ingested: {why}")
    by_path = {d.source_path: d for d in svc.documents()}
    refs: list[DocRef] = []
    for p in [*report.ingested, *report.unchanged]:
        rp = str(Path(p).resolve())
        info = stored_file(svc.store, Path(rp), by_path)
        if info is not None:
            refs.append(DocRef(info.doc_id, label(rp), rp))
    if not refs:
        raise BatchError(
            f"no documents could be ingested from '{folder}'" + (f": {notes[0]}" if notes else "")
        )
    return DocumentSet(refs, failed), notes


# -- journal ----------------------------------------------------------------------------------------


class Journal:
    """Append-only JSONL of finished rows; the latest record of a key wins. A torn last line (a
    crash mid-write) is ignored. An exclusive lock keeps two runs off the same output."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, RowResult] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = RowResult.from_json(json.loads(line))
                except (json.JSONDecodeError, TypeError, KeyError):
                    continue
                self.records[rec.key] = rec
        self._fh: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock_file()
        with open(path, "rb") as raw:
            raw.seek(0, 2)
            if raw.tell() > 0:
                raw.seek(-1, 2)
                if raw.read(1) != b"\n":  # a torn last record: start the next one on a new line
                    self._fh.write("\n")
                    self._fh.flush()
        self._mutex = threading.Lock()

    def _lock_file(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._fh.close()
            raise BatchError(
                f"another batch run is writing '{self.path}'", "wait for it or choose another --out"
            ) from exc

    def append(self, rec: RowResult) -> None:
        line = json.dumps(asdict(rec), ensure_ascii=False)
        with self._mutex:
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.records[rec.key] = rec

    def close(self) -> None:
        empty = self._fh.tell() == 0
        self._fh.close()
        if empty:  # nothing was ever answered for this output: leave no trace
            self.path.unlink(missing_ok=True)


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal.jsonl")


# -- answering --------------------------------------------------------------------------------------


def result_of(key: str, ans: Answer, label: str) -> RowResult:
    """The journal's record of an answered row: the answer's JSON shape (``app.answer_json``,
    citations naming the document by ``label``), flattened into the table's columns."""
    shown = answer_json(ans, doc_label=label)
    u = ans.usage
    return RowResult(
        key=key,
        status="ok",
        answer=shown["answer"],
        mode=shown["mode"],
        reason=shown["reason"],
        citations=tuple(shown["citations"]),
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cached_tokens=u.cached_tokens,
        seconds=round(u.seconds, 3),
        model=ans.model,
        engine=u.engine,
        answered_at=_now(),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def _answer(svc: QAService, task: Task, gauge: InFlight) -> RowResult:
    assert task.doc is not None
    t0 = time.perf_counter()
    try:
        with gauge:
            ans = svc.ask(task.row.question, mode=task.mode, doc_ids=[task.doc.doc_id])
    except Exception as exc:  # one failed row never stops the run; the journal keeps the reason
        msg = str(exc).strip("'\"") or type(exc).__name__
        return RowResult(
            key=task.key,
            status="failed",
            error=f"{type(exc).__name__}: {msg}",
            seconds=round(time.perf_counter() - t0, 3),
            answered_at=_now(),
        )
    return result_of(task.key, ans, task.doc.label)


def effective_concurrency(svc: QAService, wanted: int) -> tuple[int, str]:
    if wanted < 1:
        raise BatchError(f"--concurrency must be at least 1, not {wanted}")
    if wanted > 1 and svc.settings.llm.backend != "openai":
        return 1, (
            f"the embedded model answers one question at a time, so --concurrency {wanted} runs as 1; "
            "it applies to the OpenAI-compatible backend (LONGQA_LLM__BACKEND=openai, e.g. vLLM)"
        )
    return wanted, ""


class Answerer(Protocol):
    """Who answers the rows: threads in this process (``ThreadAnswerer``) or workers elsewhere
    (``app.cluster.ray_batch``). ``slots`` rows are in flight at most."""

    slots: int
    gauge: InFlight

    def start(self, rows: int) -> None: ...

    def submit(self, task: Task) -> Future[RowResult]: ...

    def close(self) -> None: ...


class ThreadAnswerer:
    """Rows answered by this process's service, ``slots`` threads at once."""

    def __init__(self, svc: QAService, slots: int) -> None:
        self.svc, self.slots, self.gauge = svc, slots, InFlight()
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="longqa-batch")

    def start(self, rows: int) -> None:
        _warm_up(self.svc)

    def submit(self, task: Task) -> Future[RowResult]:
        return self._pool.submit(_answer, self.svc, task, self.gauge)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _warm_up(svc: QAService) -> None:
    """Build the lazily made parts once, before any worker thread touches them."""
    _ = svc.generator
    retriever = svc.retriever
    if svc.settings.retrieval.method != "dense" and hasattr(retriever, "bm25"):
        retriever.bm25()


def run_batch(
    svc: QAService,
    opts: BatchOptions,
    progress: Callable[[BatchProgress], None] | None = None,
    ingest_progress: Callable[[IngestProgress], None] | None = None,
    *,
    ingest: IngestFn | None = None,
    answerer: Answerer | None = None,
) -> BatchSummary:
    """Answer every unfinished row and write the output table. Ctrl-C (or a progress callback
    raising KeyboardInterrupt) stops it cleanly: rows in flight finish and are journaled, the
    table is written with the rest marked 'pending', and a rerun continues from there.
    ``ingest`` and ``answerer`` replace this process's ingest and answering threads (a Ray
    cluster: ``app.cluster``); the output is the same."""
    try:
        out = check_output_path(opts.out)
        qf = read_questions(opts.questions)
    except QuestionFileError as exc:
        raise BatchError(exc.reason, exc.fix) from exc
    conc_note = ""
    if answerer is None:
        concurrency, conc_note = effective_concurrency(svc, opts.concurrency)
        answerer = ThreadAnswerer(svc, concurrency)
    journal = Journal(journal_path(out))  # first: a second run on the same output stops here
    try:
        docs, notes = collect_documents(svc, opts.docs, ingest_progress, ingest)
        notes = [*qf.notes, *notes, *([conc_note] if conc_note else [])]
        tasks = make_tasks(qf, docs, opts.mode)
        return _run(opts, out, tasks, journal, answerer, notes, progress)
    finally:
        journal.close()


def _run(
    opts: BatchOptions,
    out: Path,
    tasks: list[Task],
    journal: Journal,
    answerer: Answerer,
    notes: list[str],
    progress: Callable[[BatchProgress], None] | None,
) -> BatchSummary:
    askable = [t for t in tasks if not t.error]
    before = dict(journal.records)
    todo: list[Task] = []
    seen: set[str] = set()
    for t in sorted(askable, key=lambda t: (t.doc.label if t.doc else "", t.order)):
        if t.key in seen:
            continue  # the same question about the same document twice: answered once
        seen.add(t.key)
        rec = before.get(t.key)
        if rec is None or (rec.status == "failed" and opts.retry_failed):
            todo.append(t)
    unique = len({t.key for t in askable})
    resumed = sum(1 for k in seen if k in before and before[k].status == "ok")
    failed_before = (
        0 if opts.retry_failed else sum(1 for k in seen if k in before and before[k].status == "failed")
    )
    concurrency = answerer.slots
    if todo:
        answerer.start(len(todo))
    gauge = answerer.gauge
    t0 = time.perf_counter()
    answered = failed = streak = tokens = 0
    modes: dict[str, int] = {}
    interrupted = False
    stopped = ""
    pending = iter(todo)
    running: dict[Future[RowResult], Task] = {}

    def fill() -> None:
        while len(running) < concurrency and not stopped and not interrupted:
            t = next(pending, None)
            if t is None:
                return
            running[answerer.submit(t)] = t

    try:
        fill()
        while running:
            try:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = running[fut]
                    rec = fut.result()
                    journal.append(rec)
                    del running[fut]
                    if rec.status == "ok":
                        answered += 1
                        streak = 0
                        modes[rec.mode] = modes.get(rec.mode, 0) + 1
                        tokens += rec.prompt_tokens + rec.completion_tokens
                    else:
                        failed += 1
                        streak += 1
                        if opts.max_consecutive_failures and streak >= opts.max_consecutive_failures:
                            stopped = (
                                f"stopped after {streak} failures in a row; the last: {rec.error}. "
                                "Fix the cause and rerun with --retry-failed"
                            )
                    if progress:
                        progress(
                            _progress(t0, unique, resumed, failed_before, answered, failed, len(todo), task)
                        )
                fill()
            except KeyboardInterrupt:
                interrupted = True  # let the rows in flight finish and reach the journal
    finally:
        answerer.close()
    seconds = time.perf_counter() - t0
    rows = _output_rows(tasks, journal.records)
    extras = [c for r in rows for c in r if c not in BASE_COLUMNS]
    write_table(out, rows, [*BASE_COLUMNS, *dict.fromkeys(extras)])
    return BatchSummary(
        out=str(out),
        rows=len(rows),
        answered=answered,
        failed=failed,
        resumed=resumed,
        failed_before=failed_before,
        invalid=sum(1 for t in tasks if t.error),
        pending=sum(1 for r in rows if r["status"] == "pending"),
        seconds=round(seconds, 2),
        per_minute=round(answered / seconds * 60, 2) if answered and seconds > 0 else 0.0,
        modes=modes,
        tokens=tokens,
        concurrency=concurrency,
        peak_in_flight=gauge.peak,
        interrupted=interrupted,
        stopped=stopped,
        notes=tuple(notes),
    )


def _progress(
    t0: float,
    unique: int,
    resumed: int,
    failed_before: int,
    answered: int,
    failed: int,
    todo: int,
    task: Task,
) -> BatchProgress:
    elapsed = time.perf_counter() - t0
    now = answered + failed
    rate = now / elapsed * 60 if elapsed > 0 else 0.0
    left = todo - now
    return BatchProgress(
        done=resumed + failed_before + now,
        total=unique,
        answered=answered,
        failed=failed,
        elapsed_s=elapsed,
        per_minute=answered / elapsed * 60 if elapsed > 0 else 0.0,
        eta_s=left / rate * 60 if rate > 0 else None,
        current=f"{task.doc.label if task.doc else ''}: {task.row.question[:60]}",
    )


def _output_rows(tasks: Sequence[Task], records: dict[str, RowResult]) -> list[dict[str, Any]]:
    rows = []
    for t in tasks:
        r = records.get(t.key) if not t.error else None
        status = "invalid" if t.error else (r.status if r else "pending")
        row: dict[str, Any] = {
            "row": t.row.line,
            "id": t.row.row_id,
            "doc": t.doc.label if t.doc else t.row.doc,
            "doc_id": t.doc.doc_id if t.doc else "",
            "question": t.row.question,
            "requested_mode": t.mode,
            "status": status,
            "answer": r.answer if r else "",
            "mode": r.mode if r else "",
            "reason": r.reason if r else "",
            "citations": [dict(c) for c in r.citations] if r else [],
            "tokens": (r.prompt_tokens + r.completion_tokens) if r else 0,
            "prompt_tokens": r.prompt_tokens if r else 0,
            "completion_tokens": r.completion_tokens if r else 0,
            "cached_tokens": r.cached_tokens if r else 0,
            "seconds": r.seconds if r else 0.0,
            "model": r.model if r else "",
            "engine": r.engine if r else "",
            "error": t.error or (r.error if r else ""),
            "answered_at": r.answered_at if r else "",
            "key": t.key,
        }
        for k, v in t.row.extra:
            row[k if k not in BASE_COLUMNS else f"input_{k}"] = v
        rows.append(row)
    return rows
