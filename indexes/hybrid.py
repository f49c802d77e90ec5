"""Hybrid retrieval: dense (FAISS) + BM25, fused with reciprocal-rank fusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from indexes.bm25 import BM25Index
from indexes.embedding import Embedder
from indexes.vector import VectorIndex
from pipeline.store import MetadataStore
from pipeline.types import Chunk, Hit

RetrievalMethod = Literal["dense", "bm25", "hybrid"]


@dataclass(frozen=True)
class RetrievalConfig:
    method: RetrievalMethod = "hybrid"
    top_k: int = 5
    candidates: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    bm25_weight: float = 1.0


@dataclass(frozen=True)
class Retrieved:
    chunk: Chunk
    hit: Hit
    dense_score: float | None
    bm25_score: float | None


def rrf_fuse(
    ranked_lists: Sequence[Sequence[int]], weights: Sequence[float], k: int = 60
) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: score(id) = sum_w w / (k + rank), ranks from 1."""
    scores: dict[int, float] = {}
    for ids, w in zip(ranked_lists, weights):
        for rank, i in enumerate(ids, start=1):
            scores[i] = scores.get(i, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class HybridRetriever:
    def __init__(
        self,
        store: MetadataStore,
        index: VectorIndex,
        embedder: Embedder,
        config: RetrievalConfig,
    ) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.config = config
        self._bm25: BM25Index | None = None

    def invalidate(self) -> None:
        """Forget the BM25 index; it is rebuilt on the next query."""
        self._bm25 = None

    def bm25(self) -> BM25Index:
        if self._bm25 is None:
            ids, _docs, texts = self.store.all_chunk_texts()
            self._bm25 = BM25Index(ids, texts)
        return self._bm25

    def retrieve(
        self, query: str, k: int | None = None, doc_ids: Sequence[str] | None = None
    ) -> list[Retrieved]:
        cfg = self.config
        k = k or cfg.top_k
        allowed = self.store.vec_ids_of(doc_ids) if doc_ids else None
        n_cand = max(cfg.candidates, k)
        dense: list[tuple[int, float]] = []
        sparse: list[tuple[int, float]] = []
        if cfg.method in ("dense", "hybrid"):
            qv = self.embedder.embed([query], is_query=True)[0]
            dense = self.index.search(qv, n_cand, allowed=allowed)
        if cfg.method in ("bm25", "hybrid"):
            sparse = self.bm25().search(query, n_cand, allowed=allowed)
        dense_by = dict(dense)
        sparse_by = dict(sparse)
        if cfg.method == "dense":
            ranked, via = dense[:k], "dense"
        elif cfg.method == "bm25":
            ranked, via = sparse[:k], "bm25"
        else:
            ranked = rrf_fuse(
                [[i for i, _ in dense], [i for i, _ in sparse]],
                [cfg.dense_weight, cfg.bm25_weight],
                cfg.rrf_k,
            )[:k]
            via = "fused"
        chunks = self.store.chunks_by_vec_ids([i for i, _ in ranked])
        out: list[Retrieved] = []
        for rank, (vec_id, score) in enumerate(ranked, start=1):
            chunk = chunks.get(vec_id)
            if chunk is None:  # index and store disagree: skip, reconcile fixes it
                continue
            out.append(
                Retrieved(
                    chunk=chunk,
                    hit=Hit(chunk_id=chunk.chunk_id, score=score, rank=rank, via=via),  # type: ignore[arg-type]
                    dense_score=dense_by.get(vec_id),
                    bm25_score=sparse_by.get(vec_id),
                )
            )
        return out
