"""Ingestion: files -> documents -> chunks -> vectors, stored so that the metadata
store and the vector index always agree.

Per document: ``stage`` (one DB transaction: replace old versions, insert the
new one as pending with its chunks), add vectors to the index and save it
atomically, then ``mark_ready``. ``reconcile`` undoes whatever a crash left
half-done, and runs whenever the service opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from indexes.embedding import Embedder
from indexes.vector import VectorIndex
from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.errors import IngestError
from pipeline.loaders import SUPPORTED_SUFFIXES, is_supported, load_document
from pipeline.loaders.common import content_hash, read_bytes
from pipeline.store import MetadataStore
from pipeline.tokens import TokenCounter

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    ingested: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.ingested)} ingested, {len(self.unchanged)} unchanged, "
            f"{len(self.failed)} failed, {self.chunks} chunks added"
        )


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every supported file under named folders (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and is_supported(f)
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        else:
            out.append(p)
    return out


def reconcile(store: MetadataStore, index: VectorIndex) -> tuple[int, int]:
    """Make store and index agree: drop half-ingested documents and orphan vectors.
    Returns (documents' vectors removed, orphan vectors removed)."""
    stale = store.discard_pending()
    removed = index.remove(stale)
    known = store.all_vec_ids()
    orphans = index.ids() - known
    removed_orphans = index.remove(orphans)
    missing = known - index.ids()
    if missing:
        # Chunks whose vectors never reached the index: drop their documents so a rerun re-ingests.
        docs = {c.doc_id for c in store.chunks_by_vec_ids(sorted(missing)).values()}
        index.remove(store.delete_documents(docs))
    return removed, removed_orphans


class Ingestor:
    def __init__(
        self,
        store: MetadataStore,
        index: VectorIndex,
        index_path: Path,
        embedder: Embedder,
        counter: TokenCounter,
        chunking: ChunkingConfig,
        max_file_bytes: int,
    ) -> None:
        self.store = store
        self.index = index
        self.index_path = index_path
        self.embedder = embedder
        self.counter = counter
        self.chunking = chunking
        self.max_file_bytes = max_file_bytes
        if chunking.max_tokens > embedder.max_tokens - 2:
            log.warning(
                "chunks of %d tokens exceed what %s reads (%d); their ends would not be embedded",
                chunking.max_tokens,
                embedder.name,
                embedder.max_tokens,
            )

    def ingest(
        self,
        paths: Iterable[str | Path],
        progress: Callable[[str, int, int], None] | None = None,
    ) -> IngestReport:
        report = IngestReport()
        files = expand_paths(paths)
        for i, path in enumerate(files):
            if progress:
                progress(str(path), i, len(files))
            try:
                self._ingest_one(path, report)
            except IngestError as exc:
                report.failed.append((str(path), str(exc)))
            except Exception as exc:  # one bad file never stops the rest
                log.exception("unexpected error ingesting %s", path)
                report.failed.append((str(path), f"cannot read '{path}': unexpected error: {exc}"))
        if progress:
            progress("", len(files), len(files))
        return report

    def _ingest_one(self, path: Path, report: IngestReport) -> None:
        source = str(path.resolve()) if path.exists() else str(path)
        if path.exists() and path.is_file() and not is_supported(path):
            raise IngestError(
                str(path),
                f"unsupported file type '{path.suffix or '(no suffix)'}'",
                f"supported types are {', '.join(SUPPORTED_SUFFIXES)}",
            )
        data = read_bytes(path, self.max_file_bytes)
        digest = content_hash(data)
        same = self.store.find_by_hash(digest)
        if same is not None:
            report.unchanged.append(str(path))
            return
        doc = load_document(path, self.max_file_bytes)
        doc = replace(doc, source_path=source)
        chunks = chunk_document(doc, self.counter, self.chunking)
        if not chunks:
            raise IngestError(str(path), "no text to index after parsing", "check the file's content")
        vectors = self.embedder.embed([c.text for c in chunks])
        old = [d.doc_id for d in self.store.find_by_path(source)]
        old_vec_ids = self.store.vec_ids_of(old) if old else []
        vec_ids = self.store.stage(doc, chunks, replaces=old)
        self.index.remove(old_vec_ids)
        self.index.add(vec_ids, vectors)
        self.index.save(self.index_path)
        self.store.mark_ready(doc.doc_id)
        report.ingested.append(str(path))
        report.chunks += len(chunks)
        for w in doc.warnings:
            report.warnings.append((str(path), w))
