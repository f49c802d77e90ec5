"""Hybrid retrieval: dense (FAISS, or pgvector in PostgreSQL) + BM25, fused, optionally rescored.

1. Candidates: the top ``candidates`` of each retriever, restricted to the
   documents asked about (BM25 then takes its statistics over those documents);
   every chunk of the scope when it has at most ``exhaustive_scope`` chunks, so
   the fusion of one document's chunks does not depend on where lists stop.
2. Every candidate gets an exact score from both retrievers, so fusion never
   guesses a missing score.
3. Fusion: weighted min-max (default; ``dense_weight`` 0.15, ``bm25_weight`` 0.85,
   chosen on LaRA, docs/retrieval.md) or reciprocal-rank fusion.
4. Optional rescoring of the top ``rerank_candidates`` by a user's cross-encoder
   or the built-in bi-encoder rescoring (``indexes.rerank``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from indexes.bm25 import BM25Config, BM25Index
from indexes.cache import VectorCache
from indexes.embedding import Embedder
from indexes.fusion import minmax, rrf_fuse, weighted_fuse
from indexes.pgvector import PgVectorIndex
from indexes.rerank import Reranker
from indexes.vector import VectorIndex
from pipeline.store import MetadataStore
from pipeline.types import Chunk, Hit, HitVia

__all__ = ["HybridRetriever", "RetrievalConfig", "Retrieved", "rrf_fuse"]

RetrievalMethod = Literal["dense", "bm25", "hybrid"]
FusionMethod = Literal["weighted", "rrf"]


@dataclass(frozen=True)
class RetrievalConfig:
    method: RetrievalMethod = "hybrid"
    top_k: int = 5
    candidates: int = 50
    exhaustive_scope: int = 2000
    fusion: FusionMethod = "weighted"
    rrf_k: int = 60
    dense_weight: float = 0.15
    bm25_weight: float = 0.85
    bm25: BM25Config = field(default_factory=BM25Config)
    rerank_candidates: int = 20
    # Share of the reranker's (min-max scaled) score in the final score; 1: its order alone.
    rerank_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"unknown retrieval method '{self.method}'; use dense, bm25 or hybrid")
        if self.fusion not in ("weighted", "rrf"):
            raise ValueError(f"unknown fusion '{self.fusion}'; use 'weighted' or 'rrf'")
        if self.dense_weight < 0 or self.bm25_weight < 0 or self.dense_weight + self.bm25_weight == 0:
            raise ValueError(
                f"fusion weights must be >= 0 and not both 0, got dense {self.dense_weight}, "
                f"bm25 {self.bm25_weight}"
            )
        if not 0 <= self.rerank_weight <= 1:
            raise ValueError(f"rerank_weight must be in [0, 1], got {self.rerank_weight}")


@dataclass(frozen=True)
class Retrieved:
    chunk: Chunk
    hit: Hit
    dense_score: float | None
    bm25_score: float | None


class DenseSearcher(Protocol):
    def search(
        self, query: np.ndarray, k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]: ...


class HybridRetriever:
    def __init__(
        self,
        store: MetadataStore,
        index: VectorIndex | PgVectorIndex,
        embedder: Embedder,
        config: RetrievalConfig,
        *,
        reranker: Reranker | None = None,
        search_backend: str = "faiss-cpu",
        cache: VectorCache | None = None,
    ) -> None:
        """``cache``: the vector cache ``index`` comes from; before each query the retriever
        brings it (and BM25) up to the store's generation, so writes by other processes show.
        ``index`` may be a ``PgVectorIndex`` (no cache: the database searches)."""
        self.store = store
        self.index = index
        self.cache = cache
        self.embedder = embedder
        self.config = config
        self.reranker = reranker
        self.search_backend = search_backend
        self._bm25: BM25Index | None = None
        self._bm25_generation = -1
        self._searcher: DenseSearcher | None = None
        self._lock = threading.RLock()

    def invalidate(self) -> None:
        """Forget the BM25 index and any GPU copy of the vectors; rebuilt on the next query."""
        self._bm25 = None
        self._searcher = None

    def sync(self) -> None:
        """Bring the derived indexes up to the store's generation (one small query when current)."""
        if self.cache is None and not isinstance(self.index, PgVectorIndex):
            return
        generation = self.store.generation()
        if isinstance(self.index, PgVectorIndex):
            self.index.refresh(generation)
        # The cache may also have been refreshed by another caller (QAService.index), and a
        # rebuild replaces its index object: follow it, or searches run on the old vectors.
        elif self.cache is not None and (
            self.cache.refresh(generation) or self.index is not self.cache.index
        ):
            self.index = self.cache.index
            self._searcher = None
        if self._bm25 is not None and self._bm25_generation != generation:
            self._bm25 = None

    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            self._bm25_generation = self.store.generation()  # read before the rows (never newer)
            ids, _docs, texts = self.store.all_chunk_texts()
            self._bm25 = BM25Index(ids, texts, config=self.config.bm25)
        return self._bm25

    def searcher(self) -> DenseSearcher:
        """The dense searcher: the FAISS index, or an exact GPU copy of it (``indexes.gpu_search``)
        when ``search_backend`` asks for one (``auto``: faiss-gpu, else torch on CUDA)."""
        if self._searcher is None:
            self._searcher = self.index
            if (
                self.search_backend != "faiss-cpu"
                and isinstance(self.index, VectorIndex)
                and self.index.kind == "flat"
                and len(self.index)
            ):
                from gpu.search import choose_backend
                from indexes.gpu_search import GpuSearcher

                if choose_backend(self.search_backend) != "faiss-cpu":
                    self._searcher = GpuSearcher.from_vector_index(self.index, self.search_backend)
        return self._searcher

    def retrieve(
        self, query: str, k: int | None = None, doc_ids: Sequence[str] | None = None
    ) -> list[Retrieved]:
        with self._lock:  # a refresh changes the indexes in place: not while another thread searches
            self.sync()
            return self._retrieve(query, k, doc_ids)

    def _retrieve(self, query: str, k: int | None, doc_ids: Sequence[str] | None) -> list[Retrieved]:
        cfg = self.config
        k = k or cfg.top_k
        allowed = self.store.vec_ids_of(doc_ids) if doc_ids else None
        if allowed is not None and not allowed:
            return []
        n_cand = max(cfg.candidates, k, cfg.rerank_candidates if self.reranker else 0)
        dense: dict[int, float] = {}
        sparse: dict[int, float] = {}
        qv: np.ndarray | None = None
        if cfg.method in ("dense", "hybrid"):
            qv = self.embedder.embed([query], is_query=True)[0]
            dense = dict(self.searcher().search(qv, n_cand, allowed=allowed))
        if cfg.method in ("bm25", "hybrid"):
            sparse = dict(self.bm25().search(query, n_cand, allowed=allowed))
        ranked: list[tuple[int, float]]
        via: HitVia = cfg.method if cfg.method != "hybrid" else "fused"
        if cfg.method == "dense":
            ranked = sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))
        elif cfg.method == "bm25":
            ranked = sorted(sparse.items(), key=lambda kv: (-kv[1], kv[0]))
        else:
            assert qv is not None
            if allowed is not None and len(allowed) <= cfg.exhaustive_scope:
                cands = list(dict.fromkeys(allowed))
            else:
                cands = list(dict.fromkeys([*dense, *sparse]))
            # Exact scores from both retrievers for every candidate.
            dense = {**self.index.scores(qv, [c for c in cands if c not in dense]), **dense}
            missing = [c for c in cands if c not in sparse]
            if missing:
                sparse.update(zip(missing, self.bm25().scores_for(query, missing, allowed)))
            if cfg.fusion == "rrf":
                by_d = sorted(dense, key=lambda i: -dense[i])
                by_s = sorted((i for i in sparse if sparse[i] > 0), key=lambda i: -sparse[i])
                ranked = rrf_fuse([by_d, by_s], [cfg.dense_weight, cfg.bm25_weight], cfg.rrf_k)
            else:
                ranked = weighted_fuse(cands, [sparse, dense], [cfg.bm25_weight, cfg.dense_weight])
        chunks: dict[int, Chunk] = {}
        if self.reranker is not None and ranked:
            ranked, chunks = self._rerank(query, ranked)
            via = "rerank"
        ranked = ranked[:k]
        missing_chunks = [i for i, _ in ranked if i not in chunks]
        chunks.update(self.store.chunks_by_vec_ids(missing_chunks))
        out: list[Retrieved] = []
        for vec_id, score in ranked:
            chunk = chunks.get(vec_id)
            if chunk is None:  # deleted since the index was refreshed: skip it
                continue
            out.append(
                Retrieved(
                    chunk=chunk,
                    hit=Hit(chunk_id=chunk.chunk_id, score=score, rank=len(out) + 1, via=via),
                    dense_score=dense.get(vec_id),
                    bm25_score=sparse.get(vec_id),
                )
            )
        return out

    def _rerank(
        self, query: str, ranked: list[tuple[int, float]]
    ) -> tuple[list[tuple[int, float]], dict[int, Chunk]]:
        assert self.reranker is not None
        cfg = self.config
        head = ranked[: cfg.rerank_candidates]
        chunks = self.store.chunks_by_vec_ids([i for i, _ in head])
        head = [(i, s) for i, s in head if i in chunks]
        rr = self.reranker.scores(query, [chunks[i].text for i, _ in head])
        base = minmax(np.array([s for _, s in head]))
        final = (1 - cfg.rerank_weight) * base + cfg.rerank_weight * minmax(rr)
        order = sorted(range(len(head)), key=lambda j: (-final[j], -base[j]))
        return [(head[j][0], float(final[j])) for j in order], chunks


def describe(config: RetrievalConfig, reranker: Any = None) -> str:
    """A one-line account of the retrieval setting, for answer metadata."""
    if config.method == "hybrid":
        fusion = (
            f"weighted fusion (bm25 {config.bm25_weight:g}, dense {config.dense_weight:g})"
            if config.fusion == "weighted"
            else f"RRF k={config.rrf_k}"
        )
        text = f"hybrid: dense + BM25, {fusion}"
    else:
        text = config.method
    if reranker is not None:
        text += f"; rescored by {reranker.name}"
    return text
