"""Exact dense search on GPUs for a :class:`~indexes.vector.VectorIndex`, chosen automatically.

``GpuSearcher.from_vector_index`` copies a flat index's vectors to the fastest exact backend that
is there (:func:`gpu.search.choose_backend`): faiss-gpu when installed and a GPU is present
(cloned, sharded across GPUs), else torch on the GPUs (fp16 matmul + top-k,
:class:`gpu.search.TorchExactIndex`), else the FAISS index itself on the CPU. ``search`` has
the signature of ``VectorIndex.search``, so a retriever can use either.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpu.search import FaissIndex, TorchExactIndex, choose_backend
from indexes.vector import VectorIndex


def flat_vectors(index: VectorIndex) -> tuple[np.ndarray, np.ndarray]:
    """The ids and float32 vectors of a flat VectorIndex, in insertion order."""
    import faiss

    idmap = index._index
    inner = faiss.downcast_index(idmap.index) if hasattr(idmap, "id_map") else idmap
    if not isinstance(inner, faiss.IndexFlat):
        raise ValueError(
            f"GPU search copies the vectors of a flat index; this one is '{index.factory}'. "
            "Build the VectorIndex with factory='Flat' or search it on the CPU"
        )
    n = int(inner.ntotal)
    vectors = inner.reconstruct_n(0, n) if n else np.zeros((0, index.dim), dtype=np.float32)
    return faiss.vector_to_array(idmap.id_map).astype(np.int64), vectors


class GpuSearcher:
    """Exact top-k over a snapshot of a VectorIndex on the chosen backend (see the module doc)."""

    def __init__(self, index: VectorIndex, backend: str = "auto") -> None:
        self.backend = choose_backend(backend)
        self.dim = index.dim
        self._cpu = index
        self._torch: TorchExactIndex | None = None
        self._faiss: FaissIndex | None = None
        if self.backend == "faiss-cpu":
            return
        ids, vectors = flat_vectors(index)
        if self.backend == "torch":
            self._torch = TorchExactIndex(index.dim)
            self._torch.add(ids, vectors)
        else:
            self._faiss = FaissIndex(index.dim, gpus=-1)
            self._faiss.add(ids, vectors)

    @classmethod
    def from_vector_index(cls, index: VectorIndex, backend: str = "auto") -> GpuSearcher:
        return cls(index, backend)

    def __len__(self) -> int:
        return len(self._cpu)

    def search(
        self, query: np.ndarray, k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k ``(id, score)`` for one query vector, optionally among ``allowed`` ids only."""
        if self._torch is None and self._faiss is None:
            return self._cpu.search(query, k, allowed=allowed)
        if len(self) == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self._torch is not None:
            if allowed is not None:
                res = self._torch.search_subset(q[0], k, allowed)
            else:
                res = self._torch.search(q, min(k, len(self)))
        else:
            assert self._faiss is not None
            if allowed is not None:
                return self._cpu.search(query, k, allowed=allowed)
            res = self._faiss.search(q, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(res.ids[0], res.scores[0]) if i >= 0]
