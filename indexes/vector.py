"""FAISS vector index with integer ids, persisted atomically to disk."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class VectorIndex:
    """Inner-product index over unit vectors (cosine similarity), ids are int64.

    ``factory`` is a FAISS factory string for the inner index ("Flat" by default).
    """

    def __init__(self, dim: int, factory: str = "Flat") -> None:
        import faiss

        self.dim = dim
        self.factory = factory
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        self._index = faiss.IndexIDMap2(inner)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> set[int]:
        import faiss

        return set(faiss.vector_to_array(self._index.id_map).tolist())

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"{len(ids)} ids for {vectors.shape[0]} vectors")
        if vectors.shape[0] == 0:
            return
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, index has {self.dim}")
        self._index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )

    def remove(self, ids: Iterable[int]) -> int:
        arr = np.asarray(sorted(set(ids)), dtype=np.int64)
        if arr.size == 0:
            return 0
        return int(self._index.remove_ids(arr))

    def search(
        self, query: np.ndarray, k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (id, score) for one query vector, optionally restricted to ``allowed`` ids."""
        import faiss

        if len(self) == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return []
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            params = faiss.SearchParameters(sel=sel)
        k = min(k, len(self))
        scores, ids = self._index.search(q, k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: a crash leaves either the old or the new file, never half."""
        import faiss

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        meta = path.with_suffix(".json")
        meta_tmp = meta.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps({"dim": self.dim, "factory": self.factory}))
        os.replace(meta_tmp, meta)

    @classmethod
    def load(cls, path: str | Path, dim: int, factory: str = "Flat") -> VectorIndex:
        """Load ``path`` if it exists, else return an empty index."""
        import faiss

        path = Path(path)
        obj = cls(dim, factory)
        if path.exists():
            loaded = faiss.read_index(str(path))
            if loaded.d != dim:
                raise ValueError(
                    f"index at '{path}' has dim {loaded.d} but the embedder gives {dim}; "
                    "re-ingest into a new data directory or use the original embedder"
                )
            obj._index = loaded
        return obj
