"""The store (SQLAlchemy 2.x): documents, chunks and their vectors, the one source of truth.

SQLite file by default (WAL mode); any SQLAlchemy URL (e.g. PostgreSQL) works. Everything
that cannot be recomputed lives here: a chunk's vector (float32 bytes) is written in the
same transaction as its row. Search indexes (FAISS, BM25) are caches derived from these
rows, checked against ``generation``, a number in the one-row ``store_state`` table that
every transaction adding or deleting chunks increments.

Writing a document (``docs/design.md``, "Consistency protocol"):

1. ``stage``: insert it as ``pending`` with its writer (host, pid, start time) and a lease;
   a document with the same content already ready, or pending under a live writer, is
   left alone.
2. The writer embeds the chunks, renewing its lease (``renew_leases``).
3. ``commit``: one transaction deletes older versions of the same path, inserts the chunks
   with their vectors, marks the document ``ready`` and increments the generation.

Chunks only ever exist for ready documents, so readers never see a half-written one.

On PostgreSQL with the pgvector extension, every chunk's vector is also written (same
transaction) to ``chunks.embedding``, a pgvector ``vector(dim)`` column, so the database can
search it (``indexes.pgvector``). The column is added once the store knows its dimension; from
then on every writer fills it, whatever its own search setting, and the float32 bytes stay
the portable copy (the FAISS cache, exports and switching back read those).
``reap_dead_writers`` removes pending documents whose writer is dead (``pipeline.lease``),
never those of a live one. Write transactions are serialised: ``BEGIN IMMEDIATE`` on
SQLite, a row lock on ``store_state`` on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.errors import LongqaError
from pipeline.lease import LEASE_S, Owner, owner_is_dead
from pipeline.types import Chunk, Document, PageSpan, Span, TimedSegment

log = logging.getLogger(__name__)


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
    # The writer of a pending document and its lease (epoch seconds); empty once ready.
    owner_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_started: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class ChunkRow(Base):
    __tablename__ = "chunks"

    # Allocated from store_state.next_vec_id, never reused: a cache keyed by vec_id stays valid.
    vec_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
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
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # float32, little-endian


class StateRow(Base):
    """One row: the generation (incremented by every transaction that adds or deletes chunks),
    the next vec_id to hand out, the store's identity and its vectors' dimension."""

    __tablename__ = "store_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)
    next_vec_id: Mapped[int] = mapped_column(BigInteger)
    store_id: Mapped[str] = mapped_column(String(36))
    dim: Mapped[int | None] = mapped_column(Integer, nullable=True)


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


_F32 = np.dtype("<f4")
_LOCK_KEY = 0x6C6F6E67  # 'long': PostgreSQL advisory lock taken while creating the schema


def _sqlite_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_conn.isolation_level = None  # SQLAlchemy's 'begin' event emits BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")  # writers wait for each other instead of failing
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that reads
    # and then writes fails at once with SQLITE_BUSY when another writer committed in between.
    write = conn.get_execution_options().get("longqa_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def vector_literal(v: np.ndarray) -> str:
    """A float32 vector as pgvector's text input ('[0.1,-0.2,...]'), exact for float32 values."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(v, dtype=np.float32)) + "]"


PgVectorMode = Literal["auto", "on", "off"]


def encode_vector(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype=_F32).tobytes()


def decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return (
        np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=_F32)
        .reshape(len(blobs), dim)
        .astype(np.float32)
    )


StageStatus = Literal["staged", "ready", "busy"]


@dataclass(frozen=True)
class Staged:
    """What ``stage`` did: 'staged' (pending, owned by the caller), 'ready' (the same content is
    already ingested) or 'busy' (a live writer is ingesting it: ``why`` says who)."""

    status: StageStatus
    why: str = ""


@dataclass(frozen=True)
class Committed:
    """What ``commit`` did: 'ingested' with the new chunks' vec_ids and the documents it
    replaced, or 'unchanged' when another writer finished the same content first."""

    status: Literal["ingested", "unchanged"]
    vec_ids: list[int] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Debris:
    """A pending document removed because its writer is dead."""

    doc_id: str
    source_path: str
    why: str


class StoreError(LongqaError, RuntimeError):
    """The store cannot take this write (another embedding model's vectors, a busy document)."""


class MetadataStore:
    """``pgvector``: on PostgreSQL, keep a pgvector copy of the vectors ('auto': when the
    extension is installed or can be created; 'on': fail with one line when it cannot; 'off':
    not for this process, though a store that already has the column is still filled)."""

    def __init__(self, url: str, *, pgvector: PgVectorMode = "auto") -> None:
        self.url = url
        self.pgvector_mode = pgvector
        self.has_pgvector = False  # the extension is usable in this database
        if url.startswith("sqlite"):
            self.engine: Engine = create_engine(url, future=True, connect_args={"timeout": 60})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, future=True, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        self._writer = self.engine.execution_options(longqa_write=True)
        self._create_schema()
        with Session(self.engine) as s:
            self.store_id: str = s.scalars(select(StateRow.store_id).where(StateRow.id == 1)).one()

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------------
    def _create_schema(self) -> None:
        """Create the tables (once, even with several processes opening a new store at once),
        add the columns an older version lacked, and the state row."""
        with self._writer.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            Base.metadata.create_all(conn)
            self._upgrade(conn)
            if conn.execute(select(StateRow.id).where(StateRow.id == 1)).first() is None:
                top = conn.execute(select(func.max(ChunkRow.vec_id))).scalar() or 0
                conn.execute(
                    insert(StateRow).values(
                        id=1, generation=1, next_vec_id=top + 1, store_id=str(uuid.uuid4()), dim=None
                    )
                )
            if self.dialect == "postgresql":
                self.has_pgvector = self._pgvector_extension(conn)
                dim = conn.execute(select(StateRow.dim).where(StateRow.id == 1)).scalar()
                if self.has_pgvector and dim is not None and not _has_embedding(conn):
                    self._add_embedding_column(conn, int(dim))
            elif self.pgvector_mode == "on":
                raise StoreError(
                    f"pgvector search needs PostgreSQL, but the store is {self.dialect}",
                    "set retrieval.vector_search to 'auto' or 'faiss', or point LONGQA_DATABASE_URL "
                    "at PostgreSQL with the vector extension",
                )

    def create_tables(self, metadata: MetaData) -> None:
        """Create another module's tables in this database if missing (the app's saved chats),
        under the same lock as the store's own schema, so processes starting at once agree."""
        with self._writer.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            metadata.create_all(conn)

    def _pgvector_extension(self, conn: Connection) -> bool:
        """Whether pgvector is usable: installed in this database, or created now (needs the
        right to CREATE EXTENSION). 'on' fails with one line when it is not."""
        if self.pgvector_mode == "off":
            return False
        have = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first()
        why = ""
        if have is None:
            avail = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
            if avail is None:
                why = "the server has no pgvector extension"
            else:
                try:
                    with conn.begin_nested():
                        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                    log.info("created the pgvector extension in the database")
                except Exception as exc:  # no privilege: the admin runs CREATE EXTENSION once
                    why = f"CREATE EXTENSION vector failed ({str(exc).splitlines()[0][:160]})"
        if not why:
            try:
                with conn.begin_nested():
                    conn.execute(text("SELECT '[1]'::vector"))
            except Exception:
                why = "the vector extension is installed in a schema that is not on the search_path"
        if why and self.pgvector_mode == "on":
            raise StoreError(
                f"pgvector search was asked for, but {why}",
                "install pgvector on the server and run 'CREATE EXTENSION vector;' in the database "
                "(docs/deploy.md), or set retrieval.vector_search to 'faiss'",
            )
        if why:
            log.info("pgvector not used: %s", why)
        return not why

    def _add_embedding_column(self, conn: Connection, dim: int) -> None:
        """Add ``chunks.embedding vector(dim)`` and fill it from the stored bytes (a store that
        existed before pgvector was installed). Runs under the write lock."""
        conn.execute(text(f"ALTER TABLE chunks ADD COLUMN IF NOT EXISTS embedding vector({dim})"))
        n = 0
        while True:
            rows = conn.execute(
                text(
                    "SELECT vec_id, vector FROM chunks "
                    "WHERE embedding IS NULL AND vector IS NOT NULL LIMIT 5000"
                )
            ).all()
            if not rows:
                break
            conn.execute(
                text("UPDATE chunks SET embedding = CAST(:e AS vector) WHERE vec_id = :v"),
                [{"v": r[0], "e": vector_literal(decode_vectors([r[1]], dim)[0])} for r in rows],
            )
            n += len(rows)
        log.info("the store keeps its vectors as pgvector vector(%d) too (%d filled in)", dim, n)

    def has_embedding_column(self) -> bool:
        """Whether the chunks carry a pgvector copy of their vectors (PostgreSQL only)."""
        if self.dialect != "postgresql":
            return False
        with self.engine.connect() as conn:
            return _has_embedding(conn)

    def _upgrade(self, conn: Connection) -> None:
        """Columns added since the first release (a store written before vectors lived in it)."""
        insp = inspect(conn)
        for table, cols in (
            ("chunks", {"vector": LargeBinary()}),
            (
                "documents",
                {
                    "owner_host": String(255),
                    "owner_pid": Integer(),
                    "owner_started": BigInteger(),
                    "lease_until": Float(),
                },
            ),
        ):
            with warnings.catch_warnings():  # SQLAlchemy does not know pgvector's type
                warnings.simplefilter("ignore")
                have = {c["name"] for c in insp.get_columns(table)}
            for name, typ in cols.items():
                if name not in have:
                    ddl = typ.compile(dialect=conn.dialect)
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
                    log.info("added column %s.%s to the store", table, name)

    @contextmanager
    def _write(self) -> Iterator[tuple[Session, StateRow]]:
        """A write transaction holding the store's write lock, with the state row."""
        with Session(self._writer) as s, s.begin():
            state = s.scalars(select(StateRow).where(StateRow.id == 1).with_for_update()).one()
            yield s, state

    # -- reads of the state ---------------------------------------------------------------------
    def generation(self) -> int:
        """The number every transaction that adds or deletes chunks increments."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(StateRow.generation).where(StateRow.id == 1)).scalar_one())

    def dim(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(StateRow.dim).where(StateRow.id == 1)).scalar()

    # -- writes -------------------------------------------------------------------------------
    def stage(self, doc: Document, owner: Owner | None = None, lease_s: float = LEASE_S) -> Staged:
        """Insert ``doc`` as pending, owned by ``owner`` (this process by default) for ``lease_s``
        seconds; see ``Staged`` for what happens when the same content is already there."""
        owner = owner or Owner.current()
        with self._write() as (s, _state):
            row = s.get(DocumentRow, doc.doc_id)
            if row is not None:
                if row.status == "ready":
                    return Staged("ready")
                other = _owner_of(row)
                if other is not None and other != owner:
                    dead, why = owner_is_dead(other, row.lease_until or 0.0)
                    if not dead:
                        return Staged("busy", f"'{row.source_path}' is being ingested: {why}")
                    log.warning("taking over '%s' from a dead writer (%s)", row.source_path, why)
                s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc.doc_id))
                s.delete(row)
                s.flush()
            s.add(_document_row(doc, owner, time.time() + lease_s))
        return Staged("staged")

    def renew_leases(self, owner: Owner | None = None, lease_s: float = LEASE_S) -> int:
        """Extend the lease of every pending document ``owner`` writes; returns how many."""
        owner = owner or Owner.current()
        with self._write() as (s, _state):
            res = s.execute(
                update(DocumentRow)
                .where(*_owned_by(owner), DocumentRow.status == "pending")
                .values(lease_until=time.time() + lease_s)
            )
            return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def abandon(self, doc_id: str, owner: Owner | None = None) -> None:
        """Remove ``owner``'s pending document (its ingest failed)."""
        owner = owner or Owner.current()
        with self._write() as (s, _state):
            s.execute(
                delete(DocumentRow).where(
                    DocumentRow.doc_id == doc_id, DocumentRow.status == "pending", *_owned_by(owner)
                )
            )

    def commit(
        self,
        doc: Document,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        owner: Owner | None = None,
    ) -> Committed:
        """In one transaction: delete older versions of ``doc.source_path``, insert the chunks
        with their vectors, mark ``doc`` ready and increment the generation."""
        owner = owner or Owner.current()
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors for '{doc.source_path}'")
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        with self._write() as (s, state):
            if state.dim is not None and dim != state.dim:
                raise StoreError(
                    f"cannot store '{doc.source_path}': its vectors have dimension {dim} but the store "
                    f"at {self.engine.url.render_as_string(hide_password=True)} holds dimension "
                    f"{state.dim}",
                    "use the embedding model the store was built with, or a new data directory / database",
                )
            row = s.get(DocumentRow, doc.doc_id)
            if row is not None and row.status == "ready":
                return Committed("unchanged")
            if row is not None and _owner_of(row) not in (None, owner):
                dead, _why = owner_is_dead(_owner_of(row), row.lease_until or 0.0)  # type: ignore[arg-type]
                if not dead:  # our lease lapsed and a live writer took the document over
                    return Committed("unchanged")
            if row is None:  # our pending row was removed (lease lapsed): write it again
                row = _document_row(doc, owner, 0.0)
                s.add(row)
                s.flush()
            old = list(
                s.scalars(
                    select(DocumentRow.doc_id).where(
                        DocumentRow.source_path == doc.source_path,
                        DocumentRow.doc_id != doc.doc_id,
                        DocumentRow.status == "ready",
                    )
                )
            )
            if old:
                s.execute(delete(ChunkRow).where(ChunkRow.doc_id.in_(old)))
                s.execute(delete(DocumentRow).where(DocumentRow.doc_id.in_(old)))
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc.doc_id))
            first = int(state.next_vec_id)
            vec_ids = list(range(first, first + len(chunks)))
            if chunks:
                s.execute(
                    insert(ChunkRow),
                    [
                        _chunk_values(c, vid, encode_vector(v))
                        for c, vid, v in zip(chunks, vec_ids, vectors, strict=True)
                    ],
                )
                self._write_embeddings(s, vec_ids, vectors, state.dim or dim)
            row.status = "ready"
            row.n_chunks = len(chunks)
            row.owner_host, row.owner_pid, row.owner_started, row.lease_until = None, None, None, None
            row.ingested_at = datetime.now(UTC).isoformat(timespec="seconds")
            state.next_vec_id = first + len(chunks)
            state.generation = state.generation + 1
            if state.dim is None and dim:
                state.dim = dim
        return Committed("ingested", vec_ids, old)

    def _write_embeddings(self, s: Session, vec_ids: list[int], vectors: np.ndarray, dim: int) -> None:
        """The pgvector copy of the new chunks' vectors, in the commit's transaction. Checked under
        the write lock on every commit: a process that opened the store before the column was
        added still fills it."""
        if self.dialect != "postgresql":
            return
        conn = s.connection()
        if not _has_embedding(conn):
            if not self.has_pgvector:
                return
            self._add_embedding_column(conn, dim)
        conn.execute(
            text("UPDATE chunks SET embedding = CAST(:e AS vector) WHERE vec_id = :v"),
            [{"v": vid, "e": vector_literal(v)} for vid, v in zip(vec_ids, vectors, strict=True)],
        )

    def add(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> list[int]:
        """Stage and commit in one go (tests, benchmarks); returns the chunks' vec_ids."""
        staged = self.stage(doc)
        if staged.status == "busy":
            raise StoreError(staged.why)
        return self.commit(doc, chunks, vectors).vec_ids

    def delete_documents(self, doc_ids: Iterable[str]) -> list[int]:
        """Delete documents and their chunks; returns the vec_ids that were removed."""
        ids = list(doc_ids)
        if not ids:
            return []
        with self._write() as (s, state):
            vec_ids = list(s.scalars(select(ChunkRow.vec_id).where(ChunkRow.doc_id.in_(ids))))
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id.in_(ids)))
            s.execute(delete(DocumentRow).where(DocumentRow.doc_id.in_(ids)))
            state.generation = state.generation + 1
            return vec_ids

    def reap_dead_writers(self) -> list[Debris]:
        """Remove pending documents whose writer is dead (``pipeline.lease``); a live writer's
        are kept. Returns what was removed."""
        with Session(self.engine) as s:
            pending = [
                (r.doc_id, r.source_path, _owner_of(r), r.lease_until)
                for r in s.scalars(select(DocumentRow).where(DocumentRow.status != "ready"))
            ]
        debris: list[Debris] = []
        for doc_id, path, owner, lease in pending:
            if owner is None:
                dead, why = True, "it was left by an earlier version without a writer"
            else:
                dead, why = owner_is_dead(owner, lease or 0.0)
            if dead:
                debris.append(Debris(doc_id, path, why))
        if not debris:
            return []
        removed: list[Debris] = []
        with self._write() as (s, state):
            for d in debris:  # still pending under the same writer? (it may have finished since)
                row = s.get(DocumentRow, d.doc_id)
                if row is None or row.status == "ready":
                    continue
                owner = _owner_of(row)
                if owner is not None and owner_is_dead(owner, row.lease_until or 0.0)[0] is False:
                    continue
                s.execute(delete(ChunkRow).where(ChunkRow.doc_id == d.doc_id))
                s.delete(row)
                removed.append(d)
            if removed:
                state.generation = state.generation + 1
        return removed

    def drop_chunks_without_vectors(self) -> list[str]:
        """Delete the documents that have chunks without vectors (a store written before vectors
        lived in it, whose old index could not provide them); returns their paths."""
        with Session(self.engine) as s:
            rows = s.execute(
                select(DocumentRow.doc_id, DocumentRow.source_path)
                .join(ChunkRow, ChunkRow.doc_id == DocumentRow.doc_id)
                .where(ChunkRow.vector.is_(None))
                .distinct()
            ).all()
        self.delete_documents([r[0] for r in rows])
        return [r[1] for r in rows]

    def set_vectors(self, vec_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Fill in vectors of existing chunks (upgrading a store from an older version)."""
        if not len(vec_ids):
            return
        with self._write() as (s, state):
            for vid, v in zip(vec_ids, vectors, strict=True):
                s.execute(update(ChunkRow).where(ChunkRow.vec_id == int(vid)).values(vector=encode_vector(v)))
            if state.dim is None:
                state.dim = int(vectors.shape[1])
            self._write_embeddings(s, [int(v) for v in vec_ids], vectors, int(state.dim))
            state.generation = state.generation + 1

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

    def ready_vec_ids(self) -> np.ndarray:
        """vec_ids of every chunk of a ready document that has a vector, ascending."""
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(ChunkRow.vec_id)
                .join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
                .where(DocumentRow.status == "ready", ChunkRow.vector.is_not(None))
                .order_by(ChunkRow.vec_id)
            ).scalars()
            return np.fromiter(ids, dtype=np.int64)

    def vectors(
        self, vec_ids: Sequence[int] | None = None, batch: int = 20_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vec_ids, float32 vectors) in batches: of ``vec_ids`` (those still present), or of every
        chunk of a ready document when None."""
        dim = self.dim()
        if dim is None:
            return
        base = (
            select(ChunkRow.vec_id, ChunkRow.vector)
            .join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
            .where(DocumentRow.status == "ready", ChunkRow.vector.is_not(None))
        )
        with self.engine.connect() as conn:
            if vec_ids is not None:
                ids = [int(i) for i in vec_ids]
                for i in range(0, len(ids), batch):
                    rows = conn.execute(base.where(ChunkRow.vec_id.in_(ids[i : i + batch]))).all()
                    if rows:
                        yield (
                            np.asarray([r[0] for r in rows], np.int64),
                            decode_vectors([r[1] for r in rows], dim),
                        )
                return
            last = -1
            while True:
                rows = conn.execute(
                    base.where(ChunkRow.vec_id > last).order_by(ChunkRow.vec_id).limit(batch)
                ).all()
                if not rows:
                    return
                last = int(rows[-1][0])
                yield np.asarray([r[0] for r in rows], np.int64), decode_vectors([r[1] for r in rows], dim)

    def chunks_without_vectors(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(ChunkRow.vec_id).where(ChunkRow.vector.is_(None))).scalars())

    def counts(self) -> tuple[int, int]:
        """(chunks, chunks with a vector), over the whole store."""
        with self.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(ChunkRow)).scalar_one()
            v = conn.execute(
                select(func.count()).select_from(ChunkRow).where(ChunkRow.vector.is_not(None))
            ).scalar_one()
        return int(n), int(v)

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


def _has_embedding(conn: Connection) -> bool:
    return (
        conn.execute(
            text(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('chunks') "
                "AND attname = 'embedding' AND NOT attisdropped"
            )
        ).first()
        is not None
    )


def _owner_of(row: DocumentRow) -> Owner | None:
    if row.owner_host is None or row.owner_pid is None:
        return None
    return Owner(row.owner_host, int(row.owner_pid), int(row.owner_started or 0))


def _owned_by(owner: Owner) -> tuple:  # type: ignore[type-arg]
    return (
        DocumentRow.owner_host == owner.host,
        DocumentRow.owner_pid == owner.pid,
        DocumentRow.owner_started == owner.started,
    )


def _document_row(doc: Document, owner: Owner, lease_until: float) -> DocumentRow:
    return DocumentRow(
        doc_id=doc.doc_id,
        source_path=doc.source_path,
        media_type=doc.media_type,
        title=doc.title,
        content_hash=doc.content_hash,
        status="pending",
        n_chars=len(doc.text),
        n_pages=len(doc.pages) if doc.pages else None,
        duration=doc.segments[-1].end if doc.segments else None,
        n_chunks=0,
        text=doc.text,
        layout_json=_layout_to_json(doc),
        warnings_json=json.dumps(list(doc.warnings)),
        ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
        owner_host=owner.host,
        owner_pid=owner.pid,
        owner_started=owner.started,
        lease_until=lease_until,
    )


def _chunk_values(c: Chunk, vec_id: int, vector: bytes) -> dict[str, object]:
    return {
        "vec_id": vec_id,
        "chunk_id": c.chunk_id,
        "doc_id": c.doc_id,
        "ordinal": c.ordinal,
        "start": c.span.start,
        "end": c.span.end,
        "page_start": c.pages[0] if c.pages else None,
        "page_end": c.pages[1] if c.pages else None,
        "t_start": c.time[0] if c.time else None,
        "t_end": c.time[1] if c.time else None,
        "n_tokens": c.n_tokens,
        "text": c.text,
        "vector": vector,
    }
