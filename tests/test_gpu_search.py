"""Exact search: the torch path (CPU here, fp16 on CUDA under -m gpu), FAISS, the factory and the
indexes/ adapter, each checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu.search import FaissIndex, TorchExactIndex, choose_backend, two_stage_topk
from indexes.gpu_search import GpuSearcher
from indexes.vector import VectorIndex

CUDA = torch.cuda.is_available()


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return unit(rng, 5000, 48), np.arange(5000, dtype=np.int64) * 7 + 3, unit(rng, 23, 48)


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "cpu"]])
def test_torch_index_equals_brute_force_in_chunks_and_shards(data, devices) -> None:  # type: ignore[no-untyped-def]
    x, ids, q = data
    # A budget of ~300 rows per chunk for 23 queries: the search runs in many chunks.
    index = TorchExactIndex(48, devices=devices, memory_budget_bytes=23 * 4 * 300)
    index.add(ids[:1234], x[:1234])
    index.add(ids[1234:], x[1234:])
    assert len(index) == 5000
    assert abs(index.shards[0].n - index.shards[-1].n) <= 1
    res = index.search(q, 10)
    assert res.ids.shape == (23, 10) and res.scores.dtype == np.float32
    np.testing.assert_array_equal(res.ids, brute(x, ids, q, 10))
    assert np.all(np.diff(res.scores, axis=1) <= 1e-6)
    np.testing.assert_array_equal(index.search(q[3], 5).ids[0], brute(x, ids, q[3:4], 5)[0])


def test_torch_index_remove_subset_and_padding(data) -> None:  # type: ignore[no-untyped-def]
    x, ids, q = data
    index = TorchExactIndex(48, devices=["cpu"])
    index.add(ids[:50], x[:50])
    top = brute(x[:50], ids[:50], q[:1], 3)[0]
    assert index.remove([int(top[0]), 999_999]) == 1
    assert index.search(q[0], 1).ids[0, 0] == top[1]
    allowed = ids[10:20:3]
    sub = index.search_subset(q[0], 10, allowed)
    assert set(sub.ids[0][sub.ids[0] >= 0]) == set(allowed.tolist())
    assert list(sub.ids[0][len(allowed) :]) == [-1] * (10 - len(allowed))
    assert np.isneginf(sub.scores[0][-1])
    wide = index.search(q[:2], 60)
    assert (wide.ids[:, 49:] == -1).all() and (wide.ids[:, :49] >= 0).all()
    with pytest.raises(ValueError, match="dim 48"):
        index.search(np.zeros((1, 5), dtype=np.float32), 3)


def test_two_stage_topk_equals_topk() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(100_003, generator=g)
    v, i = two_stage_topk(s, 17, group=512)
    v2, i2 = torch.topk(s, 17)
    assert torch.equal(v, v2) and torch.equal(i, i2)


def test_backend_choice_and_faiss_cpu(data) -> None:  # type: ignore[no-untyped-def]
    x, ids, q = data
    assert choose_backend("auto") == ("faiss-cpu" if not CUDA else choose_backend("auto"))
    assert [choose_backend(b) for b in ("faiss-gpu", "torch", "faiss-cpu")] == [
        "faiss-gpu",
        "torch",
        "faiss-cpu",
    ]
    searcher = FaissIndex(48)
    assert searcher.name == "faiss-cpu"
    searcher.add(ids, x)
    np.testing.assert_array_equal(searcher.search(q, 10).ids, brute(x, ids, q, 10))
    with pytest.raises(ValueError, match="unknown search backend"):
        choose_backend("annoy")
    if not hasattr(__import__("faiss"), "StandardGpuResources"):
        with pytest.raises(RuntimeError, match="faiss-gpu"):
            FaissIndex(48, gpus=1)


@pytest.mark.parametrize("backend", ["torch", "faiss-cpu"])
def test_gpu_searcher_matches_vector_index(data, backend) -> None:  # type: ignore[no-untyped-def]
    x, ids, q = data
    vi = VectorIndex(48)
    vi.add(ids.tolist(), x)
    searcher = GpuSearcher.from_vector_index(vi, backend=backend)
    for row in q[:5]:
        want = vi.search(row, 8)
        got = searcher.search(row, 8)
        assert [i for i, _ in got] == [i for i, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=2e-3)
    allowed = ids[::97].tolist()
    assert {i for i, _ in searcher.search(q[0], 5, allowed=allowed)} <= set(allowed)
    assert searcher.search(q[0], 5, allowed=[]) == []
    assert choose_backend() == ("faiss-cpu" if not CUDA else choose_backend())
    with pytest.raises(ValueError, match="flat index"):
        GpuSearcher.from_vector_index(VectorIndex(48, factory="IVF4,Flat"), backend="torch")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize(
    "kernel,graphs",
    [
        ("mv", False),
        ("mv", True),
        ("triton", True),
        ("fused", False),
        ("fused:64:4", True),
        ("blocks", False),
        ("blocks:128:4", True),
        ("auto", True),
    ],
)
def test_cuda_fp16_search_equals_brute_force(kernel: str, graphs: bool) -> None:
    rng = np.random.default_rng(1)
    # Well separated answers: fp16 rounding cannot reorder the top 10.
    x = unit(rng, 200_000, 384)
    ids = np.arange(len(x), dtype=np.int64)
    q = x[[5, 77_777, 199_999]] + 0.01 * rng.normal(size=(3, 384)).astype(np.float32)
    index = TorchExactIndex(384, devices=["cuda"], single_query=kernel, graphs=graphs)
    index.add(ids, x)
    want = brute(x, ids, q, 1)
    for i in range(3):
        got = index.search(q[i], 10)
        assert got.ids[0, 0] == want[i, 0]
        ref = np.sort(q[i] @ x.T)[::-1][:10]
        np.testing.assert_allclose(got.scores[0], ref, atol=3e-3)
    many = index.search(q, 10)
    np.testing.assert_array_equal(many.ids[:, 0], want[:, 0])
