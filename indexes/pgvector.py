"""Vector search inside PostgreSQL with pgvector: no per-process index, the database searches.

The store writes every chunk's vector to ``chunks.embedding`` (``vector(dim)``) in the commit's
transaction (``pipeline.store``), so a search sees exactly the committed chunks: those of ready
documents (results are joined with ``documents`` and filtered on ``status = 'ready'`` too, so
even a row left behind by some other tool is never returned).

Which index serves the search (``choose_index``, measured in docs/deploy.md):

- below ``exact_below`` vectors, none: an exact scan (``ORDER BY embedding <#> q``) costs a few
  milliseconds there and has recall 1;
- above, HNSW (``vector_ip_ops``, m=16, ef_construction=64), searched with ``hnsw.ef_search``;
  it takes inserts and deletes without retraining, so it is built once;
- ``ivfflat`` when asked for (its lists are trained on the rows present, so it is rebuilt when
  the table has grown past twice the rows it was trained for; it builds much faster than HNSW).

Indexes are built with ``CREATE INDEX CONCURRENTLY`` by one process at a time (a PostgreSQL
advisory lock), in a background thread by default: writers are never blocked for the build
(only for the brief catalog updates at its start and end), and searches run exactly
meanwhile. A build killed halfway leaves an invalid index, which the next builder drops.

Searches restricted to some chunks (the documents a question is about) are always exact: the
chunks are selected by id first (a ``MATERIALIZED`` CTE, so the planner cannot push the filter
into the approximate index scan, where it would drop results).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
from sqlalchemy import text

from pipeline.store import MetadataStore, StoreError, vector_literal

log = logging.getLogger(__name__)

PgIndexKind = Literal["auto", "hnsw", "ivfflat", "exact"]
EXACT_BELOW = 20_000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
BUILD_MEMORY = "512MB"  # maintenance_work_mem of the build session (HNSW builds fast while the graph fits)
_BUILD_LOCK = 0x6C6F6E68  # advisory lock: one index builder per database at a time


def ivfflat_lists(n: int) -> int:
    """pgvector's advice: rows/1000 lists up to 1M rows, sqrt(rows) above."""
    return max(1, n // 1000) if n <= 1_000_000 else int(math.sqrt(n))


def choose_index(n: int, kind: PgIndexKind = "auto", exact_below: int = EXACT_BELOW) -> str:
    """'exact', 'hnsw' or 'ivfflat' for a table of ``n`` vectors."""
    if kind == "exact" or (kind == "auto" and n < exact_below):
        return "exact"
    return "hnsw" if kind in ("auto", "hnsw") else "ivfflat"


class PgVectorIndex:
    """Dense search by the database; the same ``search``/``scores`` as ``indexes.vector.VectorIndex``
    (ids are vec_ids, scores inner products of unit vectors)."""

    kind = "pgvector"

    def __init__(
        self,
        store: MetadataStore,
        dim: int,
        *,
        index: PgIndexKind = "auto",
        exact_below: int = EXACT_BELOW,
        ef_search: int = 100,
        probes: int = 10,
        background: bool = True,
    ) -> None:
        if store.dialect != "postgresql":
            raise StoreError(
                f"pgvector search needs PostgreSQL, but the store is {store.dialect}",
                "set retrieval.vector_search to 'auto' or 'faiss'",
            )
        have = store.dim()
        if have is not None and have != dim:
            raise StoreError(
                f"the store at {store.engine.url.render_as_string(hide_password=True)} holds vectors of "
                f"dimension {have} but the embedding model gives {dim}",
                "use the model the store was built with, or a new database",
            )
        self.store = store
        self.dim = dim
        self.index = index
        self.exact_below = exact_below
        self.ef_search = ef_search
        self.probes = probes
        self.background = background
        self.generation = -1
        self._n = 0
        self._column = False
        self._builder: threading.Thread | None = None
        self.last_build_s: float | None = None

    # -- state ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def refresh(self, generation: int | None = None) -> bool:
        """Read the row count when the store's generation moved; start an index build when the
        size calls for one. True when the generation changed."""
        generation = self.store.generation() if generation is None else generation
        if generation == self.generation:
            return False
        self.generation = generation
        if not self._column:
            self._column = self.store.has_embedding_column()
        if self._column:
            with self.store.engine.connect() as conn:
                self._n = int(conn.execute(text("SELECT count(embedding) FROM chunks")).scalar_one())
            self.ensure_index()
        return True

    def indexes(self) -> list[tuple[str, str, bool]]:
        """(name, method, valid) of the ANN indexes on chunks.embedding."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname, am.amname, i.indisvalid FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                    "WHERE i.indrelid = to_regclass('chunks') AND am.amname IN ('hnsw', 'ivfflat')"
                )
            ).all()
        return [(r[0], r[1], bool(r[2])) for r in rows]

    def wanted(self) -> tuple[str, str] | None:
        """(method, index name) this size calls for, or None for exact search."""
        method = choose_index(self._n, self.index, self.exact_below)
        if method == "exact":
            return None
        if method == "hnsw":
            return method, "chunks_embedding_hnsw"
        return method, f"chunks_embedding_ivfflat_{ivfflat_lists(self._n)}"

    def ensure_index(self, *, wait: bool = False) -> None:
        """Build the index the size calls for unless a valid one serves (in the background unless
        ``wait``)."""
        want = self.wanted()
        if want is None:
            return
        have = self.indexes()
        method, name = want
        valid = [h for h in have if h[2]]
        if method == "hnsw" and any(h[1] == "hnsw" for h in valid):
            return
        if method == "ivfflat":
            lists_have = [int(h[0].rsplit("_", 1)[1]) for h in valid if h[1] == "ivfflat"]
            if any(ivfflat_lists(self._n) <= 2 * lists for lists in lists_have):
                return
        if self._builder is not None and self._builder.is_alive():
            if wait:
                self._builder.join()
            return
        if self.background and not wait:
            self._builder = threading.Thread(target=self._build, args=(method, name), daemon=True)
            self._builder.start()
        else:
            self._build(method, name)

    def _build(self, method: str, name: str) -> None:
        """CREATE INDEX CONCURRENTLY under the builder lock; then drop the indexes it replaces."""
        try:
            with self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _BUILD_LOCK}).scalar():
                    return  # another process is building
                try:
                    for old, _m, valid in self.indexes():
                        if not valid:  # left by a builder that died
                            conn.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{old}"'))
                    conn.execute(text(f"SET maintenance_work_mem = '{BUILD_MEMORY}'"))
                    if method == "hnsw":
                        using = (
                            f"hnsw (embedding vector_ip_ops) WITH (m = {HNSW_M}, "
                            f"ef_construction = {HNSW_EF_CONSTRUCTION})"
                        )
                    else:
                        lists = int(name.rsplit("_", 1)[1])
                        using = f"ivfflat (embedding vector_ip_ops) WITH (lists = {lists})"
                    t0 = time.perf_counter()
                    log.info("building the pgvector %s index %s over %d vectors", method, name, self._n)
                    conn.execute(
                        text(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON chunks USING {using}')
                    )
                    self.last_build_s = time.perf_counter() - t0
                    log.info("built the pgvector index %s in %.1f s", name, self.last_build_s)
                    for old, _m, _valid in self.indexes():
                        if old != name:
                            conn.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{old}"'))
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _BUILD_LOCK})
        except Exception as exc:  # searches stay exact; the next refresh tries again
            log.warning("could not build the pgvector index %s (%s); searching exactly meanwhile", name, exc)

    # -- search -------------------------------------------------------------------------------
    def _params(self) -> list[str]:
        return [
            f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}",
            f"SET LOCAL ivfflat.probes = {int(self.probes)}",
        ]

    def search(
        self, query: np.ndarray, k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (vec_id, inner product) of ready chunks, optionally among ``allowed`` vec_ids."""
        if k <= 0 or not self._column and not self.store.has_embedding_column():
            return []
        self._column = True
        q = vector_literal(np.asarray(query, dtype=np.float32).reshape(-1))
        if allowed is not None and self._n and len(set(allowed)) >= self._n:
            allowed = None  # the whole library (chunks exist only for ready documents): use the index
        if allowed is not None:
            if len(allowed) == 0:
                return []
            sql = text(
                "WITH c AS MATERIALIZED (SELECT vec_id, doc_id, embedding FROM chunks "
                "WHERE vec_id = ANY(:ids) AND embedding IS NOT NULL) "
                "SELECT c.vec_id, -(c.embedding <#> CAST(:q AS vector)) AS score FROM c "
                "JOIN documents d ON d.doc_id = c.doc_id WHERE d.status = 'ready' "
                "ORDER BY c.embedding <#> CAST(:q AS vector), c.vec_id LIMIT :k"
            )
            params: dict[str, object] = {"q": q, "k": int(k), "ids": [int(i) for i in allowed]}
        else:
            # The ANN scan orders by distance alone (so the index serves it); the join keeps
            # ready documents only.
            sql = text(
                "SELECT c.vec_id, c.score FROM (SELECT vec_id, doc_id, "
                "-(embedding <#> CAST(:q AS vector)) AS score FROM chunks "
                "ORDER BY embedding <#> CAST(:q AS vector) LIMIT :k) c "
                "JOIN documents d ON d.doc_id = c.doc_id "
                "WHERE d.status = 'ready' AND c.score IS NOT NULL ORDER BY c.score DESC, c.vec_id"
            )
            params = {"q": q, "k": int(k)}
        with self.store.engine.begin() as conn:
            for stmt in self._params():
                conn.exec_driver_sql(stmt)
            rows = conn.execute(sql, params).all()
        return [(int(r[0]), float(r[1])) for r in rows]

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Exact inner products of ``query`` with the vectors of ``ids`` (unknown ids left out)."""
        if not len(ids) or not self._column and not self.store.has_embedding_column():
            return {}
        q = vector_literal(np.asarray(query, dtype=np.float32).reshape(-1))
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT vec_id, -(embedding <#> CAST(:q AS vector)) FROM chunks "
                    "WHERE vec_id = ANY(:ids) AND embedding IS NOT NULL"
                ),
                {"q": q, "ids": [int(i) for i in ids]},
            ).all()
        return {int(r[0]): float(r[1]) for r in rows}
