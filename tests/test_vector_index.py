from __future__ import annotations

from pathlib import Path

import numpy as np

from indexes.vector import VectorIndex


def test_search_remove_persist(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(100, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = list(range(1000, 1100))
    index = VectorIndex(16)
    index.add(ids, vecs)
    top = index.search(vecs[7], 3)
    assert top[0][0] == 1007 and abs(top[0][1] - 1.0) < 1e-5
    # Restricted search only returns allowed ids.
    allowed = [1003, 1050, 1099]
    assert {i for i, _ in index.search(vecs[7], 3, allowed=allowed)} == set(allowed)
    assert index.remove([1007, 1008, 424242]) == 2
    assert 1007 not in {i for i, _ in index.search(vecs[7], 5)}
    path = tmp_path / "ix" / "index.faiss"
    index.save(path)
    back = VectorIndex.load(path, 16)
    assert back.ids() == set(ids) - {1007, 1008}
    assert not list(path.parent.glob("*.tmp"))
