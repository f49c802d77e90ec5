"""``longqa ingest --ray ADDRESS``: parsing, chunking and embedding on Ray workers; the store
written here, in its own transactional way.

This process walks the folders and reads each file once for its content hash: content the store
already holds is skipped here and never leaves this machine (a rerun, or a run after a crash,
does only what is missing). A new file's bytes go through Ray's object store to a worker, an
actor (``IngestWorker``) that loaded the embedder once; it parses, chunks and embeds the file
and returns the document, its chunks and their vectors. This process then stages and commits
the document exactly as a local ingest does (``app.ingest.DocumentWriter``: under this
process's lease, one transaction per document), so the cluster needs no access to the store
and a SQLite store works as well as PostgreSQL. Workers may be on any node: they need longqa
installed, not the files.

Each worker has at most two files at a time (one parsing or embedding, one waiting), so memory
stays bounded on both sides whatever the folder's size.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from app.cluster.ray_session import ClusterError, RayOptions, connect, worker_count
from app.factories import build_asr, build_embedder
from app.ingest import (
    DocumentWriter,
    IngestReport,
    Parsed,
    Progress,
    expand_paths,
    parser_from_settings,
    walk_from_settings,
)
from app.service import QAService
from app.settings import Settings
from indexes.embedding import truncation_warning
from pipeline.errors import IngestError
from pipeline.types import Document

log = logging.getLogger(__name__)

PER_WORKER = 2  # files a worker holds at once: one at work, one queued behind it


@dataclass(frozen=True)
class FileResult:
    """What a worker returns for one file: the parsed document with its vectors, or why not."""

    key: str  # the path as this process named it
    parsed: Parsed | None = None
    vectors: np.ndarray | None = None
    reason: str = ""  # an IngestError's reason and fix, or an unexpected error
    fix: str = ""
    unexpected: bool = False
    node: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class WorkerInfo:
    node: str
    pid: int
    error: str = ""  # the worker could not start (a model missing on its node, ...)
    warning: str = ""  # chunks longer than the encoder's window, ...


class IngestWorker:
    """A Ray actor: loads the embedder once, then parses, chunks and embeds the files it is sent
    (as bytes, written to a private temporary folder under their own names)."""

    def __init__(self, settings: Settings) -> None:
        self.node = socket.gethostname()
        self.error = ""
        self.warning = ""
        self.tmp = Path(tempfile.mkdtemp(prefix="longqa-ray-"))
        try:
            self.embedder = build_embedder(settings)
            self.parser = parser_from_settings(
                settings, self.embedder.tokenizer_dir, partial(build_asr, settings)
            )
            self.warning = (
                truncation_warning(
                    settings.chunking.max_tokens,
                    self.embedder.max_tokens,
                    self.embedder.name,
                    getattr(self.embedder, "long_text", "truncate"),
                )
                or ""
            )
        except Exception as exc:  # reported by ready(), in one line
            self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def ready(self) -> WorkerInfo:
        return WorkerInfo(self.node, os.getpid(), self.error, self.warning)

    def process(self, key: str, source: str, data: bytes) -> FileResult:
        """Parse, chunk and embed one file: ``key`` is its path as the ingest was given it,
        ``source`` the path the store records."""
        t0 = time.perf_counter()
        path = self.tmp / Path(key).name
        try:
            path.write_bytes(data)
            parsed = self.parser.parse(path, source=source)
            vectors = self.embedder.embed([c.text for c in parsed.chunks])
            parsed = Parsed(_named(parsed.doc, str(path), key), parsed.chunks)
            return FileResult(key, parsed, vectors, node=self.node, seconds=time.perf_counter() - t0)
        except IngestError as exc:
            return FileResult(
                key,
                reason=exc.reason.replace(str(path), key),
                fix=exc.fix,
                node=self.node,
                seconds=time.perf_counter() - t0,
            )
        except Exception as exc:  # one bad file never stops the rest
            return FileResult(
                key,
                reason=f"unexpected error on Ray node {self.node}: {exc}".replace(str(path), key),
                unexpected=True,
                node=self.node,
                seconds=time.perf_counter() - t0,
            )
        finally:
            path.unlink(missing_ok=True)


def _named(doc: Document, tmp: str, key: str) -> Document:
    """The document's warnings naming the file as given, not the worker's temporary copy."""
    if not any(tmp in w for w in doc.warnings):
        return doc
    return replace(doc, warnings=tuple(w.replace(tmp, key) for w in doc.warnings))


@dataclass
class _Pool:
    """The running workers and the files each holds."""

    ray: Any
    actors: list[Any] = field(default_factory=list)
    load: dict[int, int] = field(default_factory=dict)  # actor index -> files held
    inflight: dict[Any, tuple[Path, int]] = field(default_factory=dict)  # ref -> (file, actor)

    def start(self, n: int, settings: Settings, cpus: float) -> list[WorkerInfo]:
        cls = self.ray.remote(num_cpus=cpus, max_restarts=3)(IngestWorker)
        self.actors = [cls.remote(settings) for _ in range(n)]
        self.load = dict.fromkeys(range(n), 0)
        infos: list[WorkerInfo] = self.ray.get([a.ready.remote() for a in self.actors])
        bad = [i for i in infos if i.error]
        if bad:
            raise ClusterError(
                f"a Ray worker on {bad[0].node} could not load the embedder: {bad[0].error}",
                "install longqa with the same extras and models on every node of the cluster",
            )
        return infos

    def stop(self) -> None:
        """End the workers, freeing their CPUs (for a batch's answering workers, say)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors, self.load, self.inflight = [], {}, {}

    def free(self) -> int | None:
        """The least loaded worker with room for another file, if any."""
        if not self.actors:
            return None
        i = min(self.load, key=lambda k: self.load[k])
        return i if self.load[i] < PER_WORKER else None

    def submit(self, i: int, path: Path, data: bytes) -> None:
        source = str(path.resolve()) if path.exists() else str(path)
        ref = self.actors[i].process.remote(str(path), source, data)
        self.inflight[ref] = (path, i)
        self.load[i] += 1

    def next_done(self) -> tuple[Path, FileResult]:
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1)
        ref = ready[0]
        path, i = self.inflight.pop(ref)
        self.load[i] -= 1
        try:
            return path, self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker died (out of memory, a crash)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return path, FileResult(str(path), reason=f"the Ray worker failed: {first}", unexpected=True)


def ingest_on_ray(
    settings: Settings,
    writer: DocumentWriter,
    paths: Iterable[str | Path],
    opts: RayOptions,
    progress: Callable[[Progress], None] | None = None,
    prune: bool = False,
) -> IngestReport:
    """Ingest ``paths`` with the parsing, chunking and embedding done by Ray workers and the
    documents committed by ``writer``; the same report a local ingest gives."""
    paths = list(paths)
    report = IngestReport()
    skipped: list[tuple[str, str]] = []
    files = expand_paths(paths, walk_from_settings(settings), skipped)
    report.warnings.extend(skipped)
    total = len(files)
    ray = connect(opts.address)
    # Workers may run on other machines: give them absolute paths (and no store to open).
    settings = settings.model_copy(
        update={"data_dir": settings.data_dir.resolve(), "model_cache": settings.model_cache.resolve()}
    )
    pool = _Pool(ray)

    def tick(stage: str, path: Path) -> None:
        if progress:
            progress(Progress(stage, str(path), _counted(report), total, report.pages, report.chunks))

    new_files = _new_files(files, writer, report)
    with writer.heartbeat():
        try:
            pending = next(new_files, None)
            if pending is not None:
                infos = pool.start(min(worker_count(ray, opts), total), settings, opts.cpus_per_worker)
                if infos[0].warning:
                    log.warning(infos[0].warning)
            while pending is not None or pool.inflight:
                while pending is not None and (i := pool.free()) is not None:
                    tick("load", pending[0])
                    pool.submit(i, *pending)
                    pending = next(new_files, None)
                path, res = pool.next_done()
                _write(writer, path, res, report)
                tick("done", path)
        finally:
            pool.stop()
    if prune:
        writer.prune([Path(p) for p in paths if Path(p).is_dir()], report)
    order = {str(f): k for k, f in enumerate(files)}
    report.ingested.sort(key=lambda p: order.get(p, 0))
    report.unchanged.sort(key=lambda p: order.get(p, 0))
    report.failed.sort(key=lambda pw: order.get(pw[0], 0))
    if progress:
        progress(Progress("finished", "", total, total, report.pages, report.chunks))
    return report


def _counted(report: IngestReport) -> int:
    return len(report.ingested) + len(report.unchanged) + len(report.failed) + len(report.busy)


def _new_files(
    files: list[Path], writer: DocumentWriter, report: IngestReport
) -> Iterator[tuple[Path, bytes]]:
    """(file, bytes) of each file whose content the store does not hold yet, read when asked
    for; unchanged and unreadable files go into the report instead."""
    for path in files:
        try:
            data = writer.read_new(path, report)
        except IngestError as exc:
            report.failed.append((str(path), str(exc)))
            continue
        if data is not None:
            yield path, data


def _write(writer: DocumentWriter, path: Path, res: FileResult, report: IngestReport) -> None:
    if res.parsed is None or res.vectors is None:
        if res.unexpected:
            report.failed.append((str(path), f"cannot read '{path}': {res.reason}"))
        else:
            report.failed.append((str(path), str(IngestError(str(path), res.reason, res.fix))))
        return
    vectors = np.asarray(res.vectors, dtype=np.float32)
    try:
        writer.write(path, res.parsed, lambda: vectors, report)
    except IngestError as exc:
        report.failed.append((str(path), str(exc)))
    except Exception as exc:  # the same as a local ingest: one file fails, the rest go on
        log.exception("unexpected error writing %s", path)
        report.failed.append((str(path), f"cannot read '{path}': unexpected error: {exc}"))


def ray_ingest(
    svc: QAService,
    paths: Iterable[str | Path],
    opts: RayOptions,
    progress: Callable[[Progress], None] | None = None,
    *,
    prune: bool = False,
) -> IngestReport:
    """``svc.ingest`` with the parsing, chunking and embedding on the Ray cluster ``opts`` names."""
    ing = svc.settings.ingest
    writer = DocumentWriter(svc.store, int(ing.max_file_mb * 1e6), ing.lease_s)
    return ingest_on_ray(svc.settings, writer, paths, opts, progress, prune)
