"""FAISS vector index with integer ids, persisted atomically, with deletion.

The index is ``IndexIDMap2`` around an inner FAISS index built from a factory
string. ``factory="auto"`` chooses by size: exact search (``Flat``) while the
index is small, and an inverted-file index (``IVF{nlist},Flat``, trained on the
vectors present, ``nlist`` about 2·sqrt(n)) once it passes ``auto_threshold``
vectors; both support deletion by id. Any other factory string is used as given;
for graph indexes (``HNSW32``) FAISS cannot delete, so ``remove`` rebuilds them.

Searches restricted to a few ids (the chunks of the documents a question is
about) score exactly those vectors, whatever the index type; exact GPU search
over a flat index lives in ``indexes.gpu_search``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import BadSetting

log = logging.getLogger(__name__)

AUTO_THRESHOLD = 100_000
EXACT_SUBSET_MAX = 50_000


def ivf_factory(n: int) -> str:
    """The IVF factory string for about ``n`` vectors: about 2·sqrt(n) lists (FAISS suggests
    4 to 16·sqrt(n); fewer lists train faster and ``nprobe`` makes up the recall)."""
    nlist = int(min(65536, 2 * math.sqrt(max(1, n)), max(1, n) // 39))  # FAISS wants >= 39 points a list
    return f"IVF{max(1, nlist)},Flat"


def choose_factory(n: int, threshold: int = AUTO_THRESHOLD) -> str:
    """Exact search below ``threshold`` vectors, IVF above."""
    return "Flat" if n < threshold else ivf_factory(n)


class VectorIndex:
    """Inner-product index over unit vectors (cosine similarity); ids are int64.

    ``factory`` is a FAISS factory string for the inner index, or ``"auto"``.
    """

    def __init__(
        self, dim: int, factory: str = "Flat", *, nprobe: int = 32, auto_threshold: int = AUTO_THRESHOLD
    ) -> None:
        self.dim = dim
        self.auto = factory == "auto"
        self.auto_threshold = auto_threshold
        self.factory = "Flat" if self.auto else factory
        self.nprobe = nprobe
        self._index = self._make(self.factory)
        self._pos: dict[int, int] | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _make(self, factory: str) -> Any:
        """An empty index. IVF indexes keep the ids themselves (FAISS's id map assumes a sub-index
        that renumbers on deletion, which IVF does not); every other type sits in an IndexIDMap2."""
        import faiss

        try:
            inner = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise BadSetting(
                "retrieval.index_factory",
                f"invalid FAISS factory string '{factory}' ({str(exc).splitlines()[0]})",
                "set retrieval.index_factory to 'auto', 'Flat', 'IVF1024,Flat', 'HNSW32' or another "
                "faiss.index_factory string",
            ) from exc
        if faiss.try_extract_index_ivf(inner) is not None:
            self._prepare(inner)
            return inner
        return faiss.IndexIDMap2(inner)

    def _prepare(self, index: Any) -> None:
        """IVF indexes need a direct map (to read vectors by id) that survives deletion."""
        import faiss

        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = self.nprobe
            if ivf.is_trained and ivf.ntotal == 0:
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)

    @property
    def _is_idmap(self) -> bool:
        return hasattr(self._index, "id_map")

    def _inner(self) -> Any:
        import faiss

        return faiss.downcast_index(self._index.index) if self._is_idmap else self._index

    @property
    def kind(self) -> str:
        """'flat', 'ivf', 'hnsw' or 'other': what the inner index is."""
        import faiss

        inner = self._inner()
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
        if faiss.try_extract_index_ivf(inner) is not None:
            return "ivf"
        if "HNSW" in type(inner).__name__:
            return "hnsw"
        return "other"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def id_array(self) -> np.ndarray:
        """Every id in the index (insertion order when id-mapped, list by list for IVF)."""
        import faiss

        if self._is_idmap:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        ivf = faiss.extract_index_ivf(self._index)
        inv = ivf.invlists
        parts = [
            faiss.rev_swig_ptr(inv.get_ids(li), inv.list_size(li)).copy()
            for li in range(ivf.nlist)
            if inv.list_size(li)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def ids(self) -> set[int]:
        return set(self.id_array().tolist())

    def _positions(self) -> dict[int, int]:
        if self._pos is None:
            self._pos = {int(i): p for p, i in enumerate(self.id_array())}
        return self._pos

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The known ids among ``ids`` and their vectors, shape (n, dim)."""
        pos = self._positions()
        found = np.asarray([i for i in ids if i in pos], dtype=np.int64)
        if found.size == 0:
            return found, np.zeros((0, self.dim), dtype=np.float32)
        flat = self._flat_view()
        if flat is not None:
            return found, flat[np.asarray([pos[int(i)] for i in found], dtype=np.int64)]
        return found, np.asarray(self._index.reconstruct_batch(found), dtype=np.float32)

    def _flat_view(self) -> np.ndarray | None:
        """A zero-copy (n, dim) view of a flat index's vectors, or None for other index types."""
        import faiss

        inner = self._inner()
        if not isinstance(inner, faiss.IndexFlat) or len(self) == 0:
            return None
        return faiss.rev_swig_ptr(inner.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)

    # -- mutation -------------------------------------------------------------------------------
    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        import faiss

        if len(ids) != vectors.shape[0]:
            raise ValueError(f"{len(ids)} ids for {vectors.shape[0]} vectors")
        if vectors.shape[0] == 0:
            return
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, index has {self.dim}")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self._index.is_trained:
            if x.shape[0] < 39:
                raise ValueError(
                    f"the '{self.factory}' index must be trained on many vectors at once, got "
                    f"{x.shape[0]}; add more together or use factory 'auto' (exact until large)"
                )
            ivf = faiss.try_extract_index_ivf(self._index)
            if ivf is not None:  # k-means on at most 64 points a list: minutes less at 1M vectors
                ivf.cp.max_points_per_centroid = 64
            self._inner().train(x)
            self._prepare(self._index)
        self._index.add_with_ids(x, np.asarray(ids, dtype=np.int64))
        self._pos = None
        if self.auto and self.kind == "flat" and len(self) >= self.auto_threshold:
            self._rebuild(ivf_factory(len(self)))

    def _rebuild(self, factory: str, keep: np.ndarray | None = None) -> None:
        """Rebuild as ``factory`` from the vectors present (``keep``: a mask over ``id_array()``)."""
        ids = self.id_array()
        if keep is not None:
            ids = ids[keep]
        _, vecs = self.vectors_of(ids.tolist())
        vecs = np.array(vecs, dtype=np.float32)  # a copy: the old index goes away
        log.info("rebuilding the vector index as %s over %d vectors", factory, len(ids))
        self.factory = factory
        self._index = self._make(factory)
        self._pos = None
        if len(ids):
            self.add(ids.tolist(), vecs)

    def remove(self, ids: Iterable[int]) -> int:
        arr = np.asarray(sorted(set(ids)), dtype=np.int64)
        if arr.size == 0 or len(self) == 0:
            return 0
        if self.kind == "hnsw":  # FAISS graphs cannot delete: rebuild without the ids
            keep = ~np.isin(self.id_array(), arr)
            removed = int((~keep).sum())
            if removed:
                self._rebuild(self.factory, keep)
            return removed
        removed = int(self._index.remove_ids(arr))
        self._pos = None
        return removed

    # -- search ---------------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, allowed: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (id, score) for one query vector, optionally restricted to ``allowed`` ids."""
        import faiss

        if len(self) == 0 or k <= 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if allowed is not None:
            if len(allowed) == 0:
                return []
            if len(allowed) <= EXACT_SUBSET_MAX:
                return self._exact_subset(q[0], k, allowed)
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            params = (
                faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
                if self.kind == "ivf"
                else faiss.SearchParameters(sel=sel)
            )
            scores, ids = self._index.search(q, min(k, len(self)), params=params)
        else:
            scores, ids = self._index.search(q, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def _exact_subset(self, q: np.ndarray, k: int, allowed: Sequence[int]) -> list[tuple[int, float]]:
        found, vecs = self.vectors_of(list(dict.fromkeys(allowed)))
        if found.size == 0:
            return []
        s = vecs @ q
        k = min(k, found.size)
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return [(int(found[i]), float(s[i])) for i in top]

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Exact inner products of ``query`` with the vectors of ``ids`` (unknown ids are left out)."""
        found, vecs = self.vectors_of(ids)
        if found.size == 0:
            return {}
        s = vecs @ np.asarray(query, dtype=np.float32).reshape(-1)
        return {int(i): float(v) for i, v in zip(found, s)}

    # -- persistence ----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The FAISS index serialised (``faiss.serialize_index``)."""
        import faiss

        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dim: int, factory: str = "Flat", *, nprobe: int = 32) -> VectorIndex:
        """The index serialised by ``to_bytes``; ``factory`` is the inner index's factory string."""
        import faiss

        loaded = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if loaded.d != dim:
            raise ValueError(f"the serialised index has dim {loaded.d}, expected {dim}")
        obj = cls(dim, "Flat", nprobe=nprobe)
        obj.auto = factory == "auto"
        obj.factory = factory if factory != "auto" else "Flat"
        obj._index = loaded
        obj._prepare(loaded)
        return obj

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash leaves either the old or the new file, never half; processes
        saving at once each write their own temporary file, and the last rename wins."""
        import faiss

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            faiss.write_index(self._index, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        meta = path.with_suffix(".json")
        atomic_write(
            meta,
            json.dumps(
                {"dim": self.dim, "factory": self.factory, "auto": self.auto, "nprobe": self.nprobe}
            ).encode(),
        )

    @classmethod
    def load(cls, path: str | Path, dim: int, factory: str = "Flat", *, nprobe: int = 32) -> VectorIndex:
        """Load ``path`` if it exists, else return an empty index."""
        import faiss

        path = Path(path)
        obj = cls(dim, factory, nprobe=nprobe)
        if path.exists():
            loaded = faiss.read_index(str(path))
            if loaded.d != dim:
                raise ValueError(
                    f"index at '{path}' has dim {loaded.d} but the embedder gives {dim}; "
                    "re-ingest into a new data directory or use the original embedder"
                )
            meta = path.with_suffix(".json")
            if meta.exists():
                obj.factory = json.loads(meta.read_text()).get("factory", obj.factory)
            obj._index = loaded
            obj._prepare(loaded)
        return obj


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file of this process + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
