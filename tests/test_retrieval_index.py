"""The FAISS vector index: type by size, deletion for every type, exact scoring, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexes.vector import VectorIndex, choose_factory, ivf_factory
from indexes.windows import MultiVectors, token_windows, window_starts


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_factory_by_size() -> None:
    assert choose_factory(10_000) == "Flat"
    assert choose_factory(100_000) == ivf_factory(100_000) == "IVF632,Flat"
    assert ivf_factory(1_000_000) == "IVF2000,Flat"
    assert ivf_factory(390) == "IVF10,Flat"  # never fewer than 39 training points a list


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW16", "auto"])
def test_every_index_type_searches_deletes_and_persists(factory: str, tmp_path: Path) -> None:
    x = _unit(2000, 32)
    ids = list(range(100, 2100))
    index = VectorIndex(32, factory, auto_threshold=1000, nprobe=16)
    index.add(ids, x)
    assert index.kind == {"Flat": "flat", "IVF16,Flat": "ivf", "HNSW16": "hnsw", "auto": "ivf"}[factory]
    assert index.search(x[7], 1)[0][0] == 107
    # Restricted searches are exact whatever the index type.
    allowed = [105, 106, 107, 5000]
    got = index.search(x[7], 10, allowed=allowed)
    assert [i for i, _ in got][0] == 107 and {i for i, _ in got} == {105, 106, 107}
    exact = index.scores(x[7], [106, 107, 5000])
    assert set(exact) == {106, 107}
    assert exact[106] == pytest.approx(float(x[6] @ x[7]), abs=1e-5)
    # Deletion by id, also for graph indexes (rebuilt).
    assert index.remove([107, 108, 99999]) == 2
    assert len(index) == 1998 and 107 not in index.ids()
    assert 107 not in {i for i, _ in index.search(x[7], 5)}
    assert [i for i, _ in index.search(x[7], 5, allowed=[106, 107])] == [106]
    path = tmp_path / "ix" / "index.faiss"
    index.save(path)
    back = VectorIndex.load(path, 32, factory)
    assert back.kind == index.kind and back.factory == index.factory
    assert back.ids() == set(ids) - {107, 108}
    assert back.remove([109]) == 1 and len(back) == 1997


def test_auto_switches_to_ivf_once_large() -> None:
    x = _unit(600, 16, seed=1)
    index = VectorIndex(16, "auto", auto_threshold=500)
    index.add(list(range(400)), x[:400])
    assert index.kind == "flat"
    index.add(list(range(400, 600)), x[400:])
    assert index.kind == "ivf" and len(index) == 600 and index.factory.startswith("IVF")
    assert index.search(x[450], 1)[0][0] == 450


def test_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="invalid FAISS factory string 'Nonsense'"):
        VectorIndex(8, "Nonsense")
    with pytest.raises(ValueError, match="trained on many vectors"):
        VectorIndex(8, "IVF4,Flat").add([1, 2], _unit(2, 8))
    with pytest.raises(ValueError, match="dim 4, index has 8"):
        VectorIndex(8).add([1], _unit(1, 4))


def test_windows_cover_every_token_with_the_fewest_windows() -> None:
    for n in (1, 254, 255, 600, 1000, 2049):
        for window, stride in ((254, 254), (126, 126), (100, 50)):
            starts = window_starts(n, window, stride)
            covered = np.zeros(n, dtype=bool)
            for s in starts:
                covered[s : s + window] = True
            assert covered.all() and starts[0] == 0 and min(n, starts[-1] + window) == n
            assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
            assert len(starts) == (1 if n <= window else -(-(n - window) // stride) + 1)
    offsets = [(0, 3), (4, 9), (9, 10), (11, 15)]
    assert token_windows(offsets, 15, 2, 2) == [(0, 9), (9, 15)]
    assert token_windows([], 7, 2, 2) == [(0, 7)]


def test_multivector_pooling() -> None:
    mv = MultiVectors(np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32), np.array([0, 0, 1]))
    mean = mv.pooled(2, "mean")
    assert np.allclose(mean[0], [2**-0.5, 2**-0.5]) and np.allclose(mean[1], [1, 0])
    assert np.allclose(mv.pooled(2, "first")[0], [1, 0])


@pytest.mark.gpu
def test_gpu_search_matches_faiss_on_the_cpu() -> None:
    import torch

    from indexes.gpu_search import GpuSearcher

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = _unit(5000, 64, seed=3)
    index = VectorIndex(64)
    index.add(list(range(5000)), x)
    gpu = GpuSearcher.from_vector_index(index, "auto")
    assert gpu.backend in ("faiss-gpu", "torch")
    for q in x[:20]:
        assert [i for i, _ in gpu.search(q, 10)] == [i for i, _ in index.search(q, 10)]
        allowed = list(range(0, 5000, 7))
        assert [i for i, _ in gpu.search(q, 5, allowed)] == [i for i, _ in index.search(q, 5, allowed)]


def test_a_new_library_does_not_call_its_cache_missing(service, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    note = tmp_path / "kestrels.txt"
    note.write_text("Kestrels hover over open fields before they dive onto voles.\n" * 5, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        service.ingest([note])
        hits = service.retrieve("What do kestrels hunt?")
    assert hits and "voles" in hits[0].chunk.text
    assert "was missing" not in caplog.text and service.settings.index_path.is_file()
