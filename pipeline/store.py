"""Metadata store (SQLAlchemy 2.x): documents and chunks.

SQLite file by default; any SQLAlchemy URL (e.g. PostgreSQL) works. The store
is the source of truth for what is ingested; the vector index holds one vector
per chunk row, keyed by the row's integer ``vec_id``.

A document is written in two steps: ``stage`` inserts it with status
``pending`` (its chunks get their ``vec_id``), the caller adds the vectors to
the index and saves it, then ``mark_ready``. ``pending`` documents left behind
by a crash are removed by ``discard_pending`` before anything else runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.types import Chunk, Document, PageSpan, Span, TimedSegment


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    __tablename__ = "documents"

    doc_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source_path: Mapped[str] = mapped_column(String(2048), index=True)
    media_type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(512), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    n_chars: Mapped[int] = mapped_column(Integer)
    n_pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text)
    layout_json: Mapped[str] = mapped_column(Text, default="{}")
    warnings_json: Mapped[str] = mapped_column(Text, default="[]")
    ingested_at: Mapped[str] = mapped_column(String(40))


class ChunkRow(Base):
    __tablename__ = "chunks"

    vec_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chunk_id: Mapped[str] = mapped_column(String(64), unique=True)
    doc_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("documents.doc_id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    page_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    page_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    t_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    t_end: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_tokens: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class DocInfo:
    """A document as listed to users (without its text)."""

    doc_id: str
    source_path: str
    media_type: str
    title: str
    status: str
    n_chars: int
    n_pages: int | None
    duration: float | None
    n_chunks: int
    warnings: tuple[str, ...]
    ingested_at: str


def _layout_to_json(doc: Document) -> str:
    layout: dict[str, list[list[float]]] = {}
    if doc.pages:
        layout["pages"] = [[p.page, p.span.start, p.span.end] for p in doc.pages]
    if doc.segments:
        layout["segments"] = [[s.index, s.start, s.end, s.span.start, s.span.end] for s in doc.segments]
    return json.dumps(layout)


def _row_to_document(row: DocumentRow) -> Document:
    layout = json.loads(row.layout_json or "{}")
    pages = tuple(PageSpan(int(p), Span(int(a), int(b))) for p, a, b in layout.get("pages", [])) or None
    segments = (
        tuple(
            TimedSegment(int(i), float(s), float(e), Span(int(a), int(b)))
            for i, s, e, a, b in layout.get("segments", [])
        )
        or None
    )
    return Document(
        doc_id=row.doc_id,
        source_path=row.source_path,
        media_type=row.media_type,  # type: ignore[arg-type]
        text=row.text,
        content_hash=row.content_hash,
        pages=pages,
        segments=segments,
        title=row.title,
        warnings=tuple(json.loads(row.warnings_json or "[]")),
    )


def _row_to_chunk(row: ChunkRow) -> Chunk:
    pages = (row.page_start, row.page_end) if row.page_start is not None else None
    time = (row.t_start, row.t_end) if row.t_start is not None else None
    return Chunk(
        chunk_id=row.chunk_id,
        doc_id=row.doc_id,
        text=row.text,
        span=Span(row.start, row.end),
        ordinal=row.ordinal,
        n_tokens=row.n_tokens,
        pages=pages,  # type: ignore[arg-type]
        time=time,  # type: ignore[arg-type]
    )


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


class MetadataStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes -----------------------------------------------------------------
    def stage(self, doc: Document, chunks: Sequence[Chunk], replaces: Iterable[str] = ()) -> list[int]:
        """Insert ``doc`` as pending with its chunks, deleting the documents it replaces,
        in one transaction. Returns the chunks' vec_ids, in order."""
        with Session(self.engine) as s, s.begin():
            for old in replaces:
                s.execute(delete(ChunkRow).where(ChunkRow.doc_id == old))
                s.execute(delete(DocumentRow).where(DocumentRow.doc_id == old))
            s.add(
                DocumentRow(
                    doc_id=doc.doc_id,
                    source_path=doc.source_path,
                    media_type=doc.media_type,
                    title=doc.title,
                    content_hash=doc.content_hash,
                    status="pending",
                    n_chars=len(doc.text),
                    n_pages=len(doc.pages) if doc.pages else None,
                    duration=doc.segments[-1].end if doc.segments else None,
                    n_chunks=len(chunks),
                    text=doc.text,
                    layout_json=_layout_to_json(doc),
                    warnings_json=json.dumps(list(doc.warnings)),
                    ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
            )
            s.flush()
            rows = [
                ChunkRow(
                    chunk_id=c.chunk_id,
                    doc_id=c.doc_id,
                    ordinal=c.ordinal,
                    start=c.span.start,
                    end=c.span.end,
                    page_start=c.pages[0] if c.pages else None,
                    page_end=c.pages[1] if c.pages else None,
                    t_start=c.time[0] if c.time else None,
                    t_end=c.time[1] if c.time else None,
                    n_tokens=c.n_tokens,
                    text=c.text,
                )
                for c in chunks
            ]
            s.add_all(rows)
            s.flush()
            return [r.vec_id for r in rows]

    def mark_ready(self, doc_id: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(DocumentRow).where(DocumentRow.doc_id == doc_id).values(status="ready"))

    def delete_documents(self, doc_ids: Iterable[str]) -> list[int]:
        """Delete documents and their chunks; returns the vec_ids that were removed."""
        ids = list(doc_ids)
        if not ids:
            return []
        with Session(self.engine) as s, s.begin():
            vec_ids = list(s.scalars(select(ChunkRow.vec_id).where(ChunkRow.doc_id.in_(ids))))
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id.in_(ids)))
            s.execute(delete(DocumentRow).where(DocumentRow.doc_id.in_(ids)))
            return vec_ids

    def discard_pending(self) -> list[int]:
        """Remove documents whose ingest never finished; returns their vec_ids."""
        with Session(self.engine) as s:
            pending = list(s.scalars(select(DocumentRow.doc_id).where(DocumentRow.status != "ready")))
        return self.delete_documents(pending)

    # -- reads ------------------------------------------------------------------
    def find_by_hash(self, content_hash: str) -> DocInfo | None:
        with Session(self.engine) as s:
            row = s.scalars(
                select(DocumentRow).where(
                    DocumentRow.content_hash == content_hash, DocumentRow.status == "ready"
                )
            ).first()
            return self._info(row) if row else None

    def find_by_path(self, source_path: str) -> list[DocInfo]:
        with Session(self.engine) as s:
            rows = s.scalars(select(DocumentRow).where(DocumentRow.source_path == source_path))
            return [self._info(r) for r in rows]

    def list_documents(self) -> list[DocInfo]:
        with Session(self.engine) as s:
            rows = s.scalars(select(DocumentRow).order_by(DocumentRow.source_path))
            return [self._info(r) for r in rows]

    def get_document(self, doc_id: str) -> Document:
        with Session(self.engine) as s:
            row = s.get(DocumentRow, doc_id)
            if row is None:
                raise KeyError(f"no document with id '{doc_id}'")
            return _row_to_document(row)

    def chunks_by_vec_ids(self, vec_ids: Sequence[int]) -> dict[int, Chunk]:
        if not vec_ids:
            return {}
        with Session(self.engine) as s:
            rows = s.scalars(select(ChunkRow).where(ChunkRow.vec_id.in_(list(vec_ids))))
            return {r.vec_id: _row_to_chunk(r) for r in rows}

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        with Session(self.engine) as s:
            rows = s.scalars(select(ChunkRow).where(ChunkRow.doc_id == doc_id).order_by(ChunkRow.ordinal))
            return [_row_to_chunk(r) for r in rows]

    def all_chunk_texts(self) -> tuple[list[int], list[str], list[str]]:
        """(vec_ids, doc_ids, texts) of every chunk of a ready document, ordered by vec_id."""
        with Session(self.engine) as s:
            rows = s.execute(
                select(ChunkRow.vec_id, ChunkRow.doc_id, ChunkRow.text)
                .join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
                .where(DocumentRow.status == "ready")
                .order_by(ChunkRow.vec_id)
            ).all()
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def all_vec_ids(self) -> set[int]:
        with Session(self.engine) as s:
            return set(s.scalars(select(ChunkRow.vec_id)))

    def vec_ids_of(self, doc_ids: Iterable[str]) -> list[int]:
        with Session(self.engine) as s:
            return list(s.scalars(select(ChunkRow.vec_id).where(ChunkRow.doc_id.in_(list(doc_ids)))))

    @staticmethod
    def _info(row: DocumentRow) -> DocInfo:
        return DocInfo(
            doc_id=row.doc_id,
            source_path=row.source_path,
            media_type=row.media_type,
            title=row.title,
            status=row.status,
            n_chars=row.n_chars,
            n_pages=row.n_pages,
            duration=row.duration,
            n_chunks=row.n_chunks,
            warnings=tuple(json.loads(row.warnings_json or "[]")),
            ingested_at=row.ingested_at,
        )
