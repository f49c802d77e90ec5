"""Ingestion: files -> documents -> chunks -> vectors, written to the store.

Per document: ``stage`` (the document as pending, owned by this process under a lease that
a heartbeat renews), embed its chunks, then ``commit`` (one transaction: older versions of
the file out, chunks with their vectors in, the document ready). The search indexes are
caches that readers bring up to date from the store (``indexes.cache``); ingest never
touches them. ``reconcile`` removes what dead writers left, never a live writer's work, and
runs whenever the service opens. Any number of processes may ingest into one store at once.

The parts: ``FileParser`` (a file to a Document and its chunks; no store, so it also runs on
cluster workers, ``app.cluster``), ``DocumentWriter`` (the store side: content-hash skip, stage,
commit, prune) and ``Ingestor`` (both in turn, embedding in this process).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from app.settings import DEFAULT_EXCLUDE, Settings
from indexes.embedding import Embedder, truncation_warning
from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.errors import IngestError, LongqaError, UploadRejected
from pipeline.lease import LEASE_S, Heartbeat, Owner
from pipeline.loaders import (
    SUPPORTED_SUFFIXES,
    ASRConfig,
    LoaderOptions,
    is_media,
    is_supported,
    load_document,
)
from pipeline.loaders.common import content_hash, read_bytes
from pipeline.store import Debris, DocInfo, MetadataStore
from pipeline.tokens import HFTokenCounter, TokenCounter
from pipeline.types import Chunk, Document

log = logging.getLogger(__name__)

EMBED_BATCH = 1024  # chunks per embed call when a file's progress is reported
# Test hook: the ingest stops itself (SIGSTOP) right after staging its first document, so a
# test can look at the store, or SIGKILL it, at exactly that point.
STOP_AFTER_STAGE_ENV = "LONGQA_TEST_STOP_AFTER_STAGE"


@dataclass
class IngestReport:
    ingested: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    busy: list[tuple[str, str]] = field(default_factory=list)  # (path, who is ingesting it)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    pages: int = 0

    def summary(self) -> str:
        text = (
            f"{len(self.ingested)} ingested, {len(self.unchanged)} unchanged, "
            f"{len(self.failed)} failed, {self.chunks} chunks added"
        )
        text += f", {len(self.removed)} removed" if self.removed else ""
        return text + (f", {len(self.busy)} being ingested by another process" if self.busy else "")


def stored_file(store: MetadataStore, path: Path, by_path: Mapping[str, DocInfo]) -> DocInfo | None:
    """The document a file became: the one ingested from this path (``by_path``: documents by
    their resolved source path), else the one holding its bytes, since ingest keeps the first
    path of identical content (a copy or a moved file is found by what it holds)."""
    found = by_path.get(str(path.resolve()))
    return found if found is not None else store.find_by_hash(content_hash(path.read_bytes()))


@dataclass(frozen=True)
class Progress:
    """One progress event: ``stage`` is 'load', 'chunk', 'embed', 'done' or 'finished';
    ``part`` is how much of the current file's 'chunk' or 'embed' stage is done (0..1)."""

    stage: str
    path: str
    files_done: int
    files_total: int
    pages: int = 0
    chunks: int = 0
    part: float | None = None


@dataclass(frozen=True)
class FileLimits:
    """What one file may cost beyond its bytes (ingest.max_pages, ...); see pipeline.loaders."""

    max_pages: int = LoaderOptions.max_pages
    max_media_minutes: float = LoaderOptions.max_media_minutes
    max_seconds: float = LoaderOptions.max_seconds


@dataclass(frozen=True)
class WalkOptions:
    include: tuple[str, ...] = ()  # glob patterns on the path relative to the folder; empty = all
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # patterns on any path component, or the relative path
    # Follow symbolic links that lead out of the folder (off: a link to /etc/passwd named
    # notes.txt is skipped with a warning). Links within the folder are read either way.
    follow_links: bool = False


def _excluded(rel: Path, exclude: Sequence[str]) -> bool:
    rel_s = rel.as_posix()
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in exclude) or any(
        fnmatch.fnmatch(rel_s, pat) for pat in exclude
    )


def expand_paths(
    paths: Iterable[str | Path], walk: WalkOptions | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[Path]:
    """Files named directly, plus every supported file under named folders (sorted).

    In a folder, symbolic links (to files or folders) that lead out of it are skipped unless
    ``walk.follow_links``; each skip is appended to ``skipped`` as (path, reason). Each real
    folder is walked once, so link loops end."""
    walk = walk or WalkOptions()
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        root = p.resolve()
        found: list[Path] = []
        visited: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(p, followlinks=walk.follow_links):
            real = os.path.realpath(dirpath)
            if real in visited:
                dirnames[:] = []
                continue
            visited.add(real)
            d = Path(dirpath)
            keep = []
            for name in dirnames:
                sub = d / name
                if _excluded(sub.relative_to(p), walk.exclude):
                    continue
                if sub.is_symlink() and not walk.follow_links:
                    if not _inside(sub, root) and skipped is not None:
                        skipped.append((str(sub), _outside_note(sub)))
                    continue
                keep.append(name)
            dirnames[:] = keep
            for name in filenames:
                f = d / name
                rel = f.relative_to(p)
                if not is_supported(f) or _excluded(rel, walk.exclude):
                    continue
                if walk.include and not any(fnmatch.fnmatch(rel.as_posix(), pat) for pat in walk.include):
                    continue
                if not f.is_file():  # broken links, pipes, devices
                    continue
                if not walk.follow_links and not _inside(f, root):
                    if skipped is not None:
                        skipped.append((str(f), _outside_note(f)))
                    continue
                found.append(f)
        out.extend(sorted(found))
    return out


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop
        return False


def _outside_note(path: Path) -> str:
    return (
        f"skipped: a symbolic link to '{os.path.realpath(path)}', outside the folder; "
        "pass --follow-links to read it"
    )


def reconcile(store: MetadataStore) -> list[Debris]:
    """Remove pending documents whose writer is dead (crash debris), saying so in one line
    each; a live writer's pending documents are left alone. Returns what was removed."""
    debris = store.reap_dead_writers()
    for d in debris:
        log.warning("removed an unfinished ingest of '%s' (%s); ingest it again", d.source_path, d.why)
    return debris


_UNSAFE = re.compile(r"[^\w.\- ()+,]")


_NAME_BYTES = 200  # well under the 255-byte file name limit of common file systems


def safe_destination(root: Path, filename: str, data: bytes | None = None) -> Path:
    """Where an uploaded file named ``filename`` may be written: always inside ``root``.

    Directory parts, drive letters, '..', control characters and leading dots are
    dropped; an empty result is refused. Long names are shortened to 200 bytes keeping
    their suffix (a 300-character name stays a .pdf). With ``data``, an existing different
    file is never overwritten: the name gets a short hash of the content instead
    ('report?.pdf' and 'report*.pdf' both sanitize to 'report_.pdf').
    """
    name = filename.replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip().lstrip(".")
    if not name or name in {".", ".."}:
        raise UploadRejected(
            f"cannot store an upload named {filename!r}: no usable file name", "rename the file"
        )
    stem, suffix = os.path.splitext(name)
    if len(suffix.encode()) > 20:
        stem, suffix = name, ""
    root = root.resolve()
    target = root / _shorten(stem, suffix)
    if data is not None and target.exists() and (not target.is_file() or target.read_bytes() != data):
        target = root / _shorten(stem, suffix, "-" + hashlib.sha256(data).hexdigest()[:10])
    target = target.resolve()
    if target.parent != root:
        raise UploadRejected(f"cannot store an upload named {filename!r} outside {root}", "rename the file")
    return target


def _shorten(stem: str, suffix: str, tag: str = "") -> str:
    room = _NAME_BYTES - len(suffix.encode()) - len(tag)
    return stem.encode()[:room].decode("utf-8", "ignore") + tag + suffix


def read_file(path: Path, max_bytes: int) -> bytes:
    """A supported file's bytes (for its content hash), or an IngestError saying why not."""
    if path.is_file() and not is_supported(path):
        raise IngestError(
            str(path),
            f"unsupported file type '{path.suffix or '(no suffix)'}'",
            f"supported types are {', '.join(SUPPORTED_SUFFIXES)}",
        )
    return read_bytes(path, max_bytes)


@dataclass(frozen=True)
class Parsed:
    """A file read and cut into chunks: what ingest has before embedding (no store involved)."""

    doc: Document
    chunks: list[Chunk]


class FileParser:
    """Reads one file into a Document and its chunks. It needs no store, so it runs wherever the
    file's bytes are: in the ingesting process, or on a cluster worker (``app.cluster``)."""

    def __init__(
        self,
        counter: TokenCounter,
        chunking: ChunkingConfig,
        max_file_bytes: int,
        asr: Callable[[], ASRConfig] | None = None,
        max_chars: int = 50_000_000,
        limits: FileLimits | None = None,
    ) -> None:
        self.counter = counter
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        self.max_chars = max_chars
        self.limits = limits or FileLimits()
        self.asr = asr

    def options(self, path: Path) -> LoaderOptions:
        asr = None
        if is_media(path):
            if self.asr is None:
                raise IngestError(str(path), "speech-to-text is not available", "pip install 'longqa[asr]'")
            try:
                asr = self.asr()
            except LongqaError as exc:  # the speech model is missing: its fix is the file's fix
                raise IngestError(
                    str(path), f"speech-to-text is not available ({exc.headline})", exc.fix
                ) from exc
            except Exception as exc:
                raise IngestError(str(path), f"speech-to-text is not available ({exc})", "") from exc
        return LoaderOptions(
            max_bytes=self.max_file_bytes,
            asr=asr,
            max_chars=self.max_chars,
            max_pages=self.limits.max_pages,
            max_media_minutes=self.limits.max_media_minutes,
            max_seconds=self.limits.max_seconds,
        )

    def parse(
        self, path: Path, source: str | None = None, within: Callable[[str, float], None] | None = None
    ) -> Parsed:
        """Load ``path`` and chunk it; the document's ``source_path`` is ``source`` (default: the
        resolved path). Raises IngestError with a one-line reason."""
        if source is None:
            source = str(path.resolve()) if path.exists() else str(path)
        doc = replace(load_document(path, self.options(path)), source_path=source)
        n_chars = max(1, len(doc.text))
        on_chunk = (lambda done: within("chunk", done / n_chars)) if within else None
        chunks = chunk_document(doc, self.counter, self.chunking, on_chunk)
        if not chunks:
            raise IngestError(str(path), "no text to index after parsing", "check the file's content")
        return Parsed(doc, chunks)


class DocumentWriter:
    """The store side of ingest: skips content the store holds, stages a document under this
    process's lease, commits it with its vectors in one transaction, prunes vanished files.
    Whoever parsed and embedded the document (this process or a cluster worker), this writes it."""

    def __init__(self, store: MetadataStore, max_file_bytes: int, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.owner = Owner.current()
        self.lease_s = lease_s
        self._stop_after_stage = bool(os.environ.get(STOP_AFTER_STAGE_ENV))

    def heartbeat(self) -> Heartbeat:
        """Renews the leases of this writer's pending documents while it is entered."""
        renew = lambda: self.store.renew_leases(self.owner, self.lease_s)  # noqa: E731
        return Heartbeat(renew, self.lease_s / 4)

    def read_new(self, path: Path, report: IngestReport) -> bytes | None:
        """The file's bytes when its content is not in the store yet; None (and the file listed as
        unchanged) when it is. Raises IngestError for a file that cannot be read."""
        data = read_file(path, self.max_file_bytes)
        if self.store.find_by_hash(content_hash(data)) is not None:
            report.unchanged.append(str(path))
            return None
        return data

    def write(
        self, path: Path, parsed: Parsed, vectors: Callable[[], np.ndarray], report: IngestReport
    ) -> None:
        """Stage the document, get its chunks' vectors (embedded now, or already embedded on a
        worker), commit it in one transaction, and record the outcome in ``report``."""
        doc, chunks = parsed.doc, parsed.chunks
        staged = self.store.stage(doc, self.owner, self.lease_s)
        if staged.status == "ready":
            report.unchanged.append(str(path))
            return
        if staged.status == "busy":
            log.warning("skipped %s: %s", path, staged.why)
            report.busy.append((str(path), staged.why))
            return
        log.info("staged %s (%d chunks)", path, len(chunks))
        if self._stop_after_stage:
            self._stop_after_stage = False
            os.kill(os.getpid(), signal.SIGSTOP)
        try:
            vecs = vectors()
            log.info("embedded %s", path)
            done = self.store.commit(doc, chunks, vecs, self.owner)
        except BaseException:
            self.store.abandon(doc.doc_id, self.owner)
            raise
        if done.status == "unchanged":
            report.unchanged.append(str(path))
            return
        log.info("ingested %s", path)
        report.ingested.append(str(path))
        report.chunks += len(chunks)
        report.pages += len(doc.pages) if doc.pages else 0
        for w in doc.warnings:
            report.warnings.append((str(path), w))

    def prune(self, folders: list[Path], report: IngestReport) -> None:
        """Remove documents whose source file under one of ``folders`` no longer exists."""
        roots = [f.resolve() for f in folders]
        gone = [
            d
            for d in self.store.list_documents()
            if any(Path(d.source_path).is_relative_to(r) for r in roots) and not Path(d.source_path).exists()
        ]
        if not gone:
            return
        self.store.delete_documents([d.doc_id for d in gone])
        report.removed.extend(d.source_path for d in gone)


class Ingestor:
    """Ingest in this process: each file is read, parsed, embedded and written in turn."""

    def __init__(
        self,
        store: MetadataStore,
        embedder: Embedder,
        counter: TokenCounter,
        chunking: ChunkingConfig,
        max_file_bytes: int,
        asr: Callable[[], ASRConfig] | None = None,
        walk: WalkOptions | None = None,
        lease_s: float = LEASE_S,
        max_chars: int = 50_000_000,
        limits: FileLimits | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.parser = FileParser(counter, chunking, max_file_bytes, asr, max_chars, limits)
        self.writer = DocumentWriter(store, max_file_bytes, lease_s)
        self.walk = walk or WalkOptions()
        warning = truncation_warning(
            chunking.max_tokens,
            embedder.max_tokens,
            embedder.name,
            getattr(embedder, "long_text", "truncate"),
        )
        if warning:
            log.warning(warning)

    def ingest(
        self,
        paths: Iterable[str | Path],
        progress: Callable[[Progress], None] | None = None,
        prune: bool = False,
    ) -> IngestReport:
        paths = list(paths)
        report = IngestReport()
        skipped: list[tuple[str, str]] = []
        files = expand_paths(paths, self.walk, skipped)
        report.warnings.extend(skipped)
        total = len(files)
        with self.writer.heartbeat():
            self._ingest_files(files, report, progress)
        if prune:
            self.writer.prune([Path(p) for p in paths if Path(p).is_dir()], report)
        if progress:
            progress(Progress("finished", "", total, total, report.pages, report.chunks))
        return report

    def _ingest_files(
        self, files: list[Path], report: IngestReport, progress: Callable[[Progress], None] | None
    ) -> None:
        total = len(files)
        for i, path in enumerate(files):
            if progress:
                progress(Progress("load", str(path), i, total, report.pages, report.chunks))

            def within(stage: str, part: float, path: Path = path, i: int = i) -> None:
                if progress:
                    progress(Progress(stage, str(path), i, total, report.pages, report.chunks, part))

            try:
                self._ingest_one(path, report, within)
            except IngestError as exc:
                report.failed.append((str(path), str(exc)))
                log.info("failed %s: %s", path, exc)
            except Exception as exc:  # one bad file never stops the rest
                log.exception("unexpected error ingesting %s", path)
                report.failed.append((str(path), f"cannot read '{path}': unexpected error: {exc}"))
            if progress:
                progress(Progress("done", str(path), i + 1, total, report.pages, report.chunks))

    def _embed(self, texts: list[str], within: Callable[[str, float], None] | None) -> np.ndarray:
        """Vectors of texts, in batches so that a long file reports its progress."""
        if within is None or len(texts) <= EMBED_BATCH:
            return self.embedder.embed(texts)
        parts = []
        for k in range(0, len(texts), EMBED_BATCH):
            within("embed", k / len(texts))
            parts.append(self.embedder.embed(texts[k : k + EMBED_BATCH]))
        return np.concatenate(parts)

    def _ingest_one(
        self, path: Path, report: IngestReport, within: Callable[[str, float], None] | None = None
    ) -> None:
        if self.writer.read_new(path, report) is None:
            return
        parsed = self.parser.parse(path, within=within)
        self.writer.write(path, parsed, lambda: self._embed([c.text for c in parsed.chunks], within), report)


def parser_from_settings(
    settings: Settings, tokenizer_dir: str, asr: Callable[[], ASRConfig] | None = None
) -> FileParser:
    """The FileParser the settings describe, counting tokens with the embedder's tokenizer."""
    c, ing = settings.chunking, settings.ingest
    return FileParser(
        HFTokenCounter(tokenizer_dir),
        ChunkingConfig(c.max_tokens, c.overlap_tokens, c.boundary, c.max_chars_per_token),
        int(ing.max_file_mb * 1e6),
        asr,
        ing.max_chars,
        FileLimits(ing.max_pages, ing.max_media_minutes, ing.max_seconds_per_file),
    )


def walk_from_settings(settings: Settings) -> WalkOptions:
    ing = settings.ingest
    return WalkOptions(tuple(ing.include), tuple(ing.exclude), follow_links=ing.follow_links)


def ingestor_from_settings(
    store: MetadataStore, embedder: Embedder, settings: Settings, asr: Callable[[], ASRConfig] | None = None
) -> Ingestor:
    """The Ingestor the settings describe, writing to ``store``."""
    p = parser_from_settings(settings, embedder.tokenizer_dir, asr)
    ing = settings.ingest
    return Ingestor(
        store,
        embedder,
        p.counter,
        p.chunking,
        p.max_file_bytes,
        asr=asr,
        walk=walk_from_settings(settings),
        max_chars=p.max_chars,
        lease_s=ing.lease_s,
        limits=p.limits,
    )
