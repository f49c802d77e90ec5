"""Exact inner-product search on GPUs (and CPUs): torch matmul + top-k in memory-sized chunks,
FAISS on GPUs when faiss-gpu is installed, and ``choose_backend``, which picks between them
(``indexes.gpu_search`` builds the chosen one over a ``VectorIndex``).

Vectors are expected unit length (cosine similarity as inner product), as the project's embedders
give them. Nothing here imports project code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gpu.device import resolve_device


@dataclass(frozen=True)
class SearchResult:
    """Top-k of each query, best first: ``scores`` float32 and ``ids`` int64, shape ``(n_queries, k)``.

    Where fewer than ``k`` vectors exist, the row is padded with id -1 and score -inf.
    """

    scores: np.ndarray
    ids: np.ndarray


def _pad_result(scores: torch.Tensor, ids: torch.Tensor, k: int) -> SearchResult:
    s = scores.float().cpu().numpy()
    i = ids.cpu().numpy().astype(np.int64)
    if s.shape[1] < k:
        pad = k - s.shape[1]
        s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
        i = np.pad(i, ((0, 0), (0, pad)), constant_values=-1)
    return SearchResult(np.ascontiguousarray(s, dtype=np.float32), np.ascontiguousarray(i))


def two_stage_topk(scores: torch.Tensor, k: int, group: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of a 1-D score vector through group maxima.

    The ``k`` groups (of ``group`` rows) with the largest maxima hold the top ``k`` scores: the
    k-th largest group maximum is a score that at least ``k`` rows reach, so any row of the top
    ``k`` has a score at least that high and its group's maximum ranks in the top ``k``. So: one
    pass for the maxima, a top-k over them, and a top-k over ``k * group`` candidate rows, instead
    of a multi-pass radix select over all rows. Same result as ``torch.topk`` up to ties.
    """
    v, i = block_topk(scores.unsqueeze(0), k, group)
    return v[0], i[0]


def block_topk(scores: torch.Tensor, k: int, group: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise exact top-k of ``scores`` ``(rows, n)`` by group maxima (see :func:`two_stage_topk`)."""
    rows, n = scores.shape
    k = min(k, n)
    m = n - n % group
    if m // group <= k or k > group:
        return torch.topk(scores, k, dim=1)
    maxima = scores[:, :m].view(rows, m // group, group).amax(dim=2)
    blocks = torch.topk(maxima, k, dim=1).indices  # (rows, k)
    cand = (blocks.unsqueeze(2) * group + torch.arange(group, device=scores.device)).view(rows, k * group)
    if m < n:
        tail = torch.arange(m, n, device=scores.device).expand(rows, n - m)
        cand = torch.cat([cand, tail], dim=1)
    v, j = torch.topk(torch.gather(scores, 1, cand), k, dim=1)
    return v, torch.gather(cand, 1, j)


class _Shard:
    """Rows of the index that live on one device, with a growable buffer."""

    def __init__(self, dim: int, device: str, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self.x = torch.empty(0, dim, device=device, dtype=dtype)
        self.ids = torch.empty(0, device=device, dtype=torch.int64)
        self.n = 0
        self.graphs: dict[int, Any] = {}
        self.kernel: str | None = None  # the one-query scoring kernel picked for this shard

    def add(self, ids: torch.Tensor, x: torch.Tensor) -> None:
        need = self.n + x.shape[0]
        if need > self.x.shape[0]:
            cap = max(need, int(self.x.shape[0] * 1.5), 1024)
            grown = torch.empty(cap, x.shape[1], device=self.device, dtype=self.dtype)
            grown[: self.n] = self.x[: self.n]
            grown_ids = torch.empty(cap, device=self.device, dtype=torch.int64)
            grown_ids[: self.n] = self.ids[: self.n]
            self.x, self.ids = grown, grown_ids
        self.x[self.n : need] = x.to(self.device, self.dtype)
        self.ids[self.n : need] = ids.to(self.device)
        self.n = need
        self.graphs.clear()
        self.kernel = None

    def keep(self, mask: torch.Tensor) -> int:
        kept = int(mask.sum())
        removed = self.n - kept
        if removed:
            self.x = self.x[: self.n][mask].contiguous()
            self.ids = self.ids[: self.n][mask].contiguous()
            self.n = kept
            self.graphs.clear()
        return removed


class TorchExactIndex:
    """Exact search as ``queries @ vectors.T`` + top-k with torch, on one or several devices.

    ``devices``: where the rows live (``None``: every CUDA GPU if there are any, else the CPU);
    rows are spread evenly, each device searches its shard and the top-k lists are merged.
    ``dtype`` ``auto`` keeps vectors in fp16 on GPUs (half the bytes to read per query) and float32
    on the CPU. ``memory_budget_bytes`` bounds the score block of a batch of queries, so any
    number of queries runs in chunks that fit. ``single_query`` picks the kernel for one query on
    a GPU: ``mv`` or ``mm`` (cuBLAS) or ``triton`` scores followed by a top-k through group maxima
    (:func:`two_stage_topk`); ``fused`` (``fused:rows:warps``), scoring and top-k in one Triton
    kernel plus a few merges (gpu.triton_scores.search_topk); ``blocks`` (``blocks:rows:warps``),
    scoring that keeps each block's maximum and one selection launch (search_topk_blocks); or
    ``auto``, which times each once
    per shard and keeps the fastest. ``graphs`` replays
    the one-query search as a captured CUDA graph, which removes the launch gaps.
    """

    name = "torch-exact"

    def __init__(
        self,
        dim: int,
        *,
        devices: Sequence[str] | None = None,
        dtype: str = "auto",
        memory_budget_bytes: int = 1 << 30,
        single_query: str = "auto",
        graphs: bool = True,
    ) -> None:
        if devices is None:
            n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
            devices = [f"cuda:{i}" for i in range(n_gpu)] or ["cpu"]
        devices = [resolve_device(d) for d in devices]
        if single_query not in ("auto", "mv", "mm", "triton") and not single_query.startswith(
            ("fused", "blocks")
        ):
            raise ValueError(
                f"unknown single_query kernel '{single_query}'; use auto, mv, mm, triton, fused or blocks"
            )
        self.dim = dim
        self.devices = list(devices)
        self.memory_budget_bytes = memory_budget_bytes
        self.single_query = single_query
        self.use_graphs = graphs
        self.shards = []
        for d in self.devices:
            if dtype == "auto":
                dt = torch.float16 if d.startswith("cuda") else torch.float32
            else:
                dt = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
            self.shards.append(_Shard(dim, d, dt))

    def __len__(self) -> int:
        return sum(s.n for s in self.shards)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray | torch.Tensor) -> None:
        x = torch.as_tensor(vectors)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"vectors have shape {tuple(x.shape)}, the index holds dim {self.dim}")
        id_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        if id_t.shape[0] != x.shape[0]:
            raise ValueError(f"{id_t.shape[0]} ids for {x.shape[0]} vectors")
        # Fill the emptiest shards first, so shards stay within one batch of each other.
        start = 0
        total = len(self) + x.shape[0]
        per = -(-total // len(self.shards))
        for shard in sorted(self.shards, key=lambda s: s.n):
            take = min(max(per - shard.n, 0), x.shape[0] - start)
            if take:
                shard.add(id_t[start : start + take], x[start : start + take])
                start += take

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        drop = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        removed = 0
        for s in self.shards:
            if s.n:
                removed += s.keep(~torch.isin(s.ids[: s.n], drop.to(s.device)))
        return removed

    # -- search ---------------------------------------------------------------------------------
    def _chunk_rows(self, n_queries: int, itemsize: int) -> int:
        return max(4096, self.memory_budget_bytes // max(1, n_queries * itemsize))

    def _search_shard_many(self, s: _Shard, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        kk = min(k, s.n)
        rows = self._chunk_rows(q.shape[0], s.x.element_size())
        best_v: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for a in range(0, s.n, rows):
            b = min(s.n, a + rows)
            scores = q @ s.x[a:b].T
            v, i = block_topk(scores, min(kk, b - a))
            i = i + a
            if best_v is None or best_i is None:
                best_v, best_i = v, i
            else:
                v = torch.cat([best_v, v], dim=1)
                i = torch.cat([best_i, i], dim=1)
                best_v, j = torch.topk(v, kk, dim=1)
                best_i = torch.gather(i, 1, j)
        assert best_v is not None and best_i is not None
        return best_v.float(), s.ids[best_i]

    def _single_scores(self, s: _Shard, q: torch.Tensor, kernel: str) -> torch.Tensor:
        """One query's scores against every row of the shard (the kernels besides ``fused``)."""
        if kernel == "triton":
            from gpu.triton_scores import scores_fp32

            return scores_fp32(s.x, q, s.n)
        if kernel == "mm":
            return (q.unsqueeze(0) @ s.x[: s.n].T)[0]
        return torch.mv(s.x[: s.n], q)

    def _one_query(
        self, s: _Shard, q: torch.Tensor, k: int, kernel: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k ``(scores (1, k) float32, ids (1, k))`` of one query on one shard."""
        if kernel.startswith(("fused", "blocks")):
            from gpu.triton_scores import search_topk, search_topk_blocks

            parts = kernel.split(":")
            if kernel.startswith("fused"):
                block, warps = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (128, 4)
                v, ids = search_topk(s.x, q, s.n, k, s.ids, block_n=block, num_warps=warps)
            else:
                block, warps = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (256, 8)
                v, ids = search_topk_blocks(s.x, q, s.n, k, s.ids, block_n=block, num_warps=warps)
            return v.unsqueeze(0), ids.unsqueeze(0)
        v, i = two_stage_topk(self._single_scores(s, q, kernel), k)
        return v.float().unsqueeze(0), s.ids[i].unsqueeze(0)

    def _kernel_for(self, s: _Shard, q: torch.Tensor, k: int) -> str:
        if self.single_query != "auto":
            return self.single_query
        if s.kernel is None:
            s.kernel = self._pick_kernel(s, q, k)
        return s.kernel

    def _pick_kernel(self, s: _Shard, q: torch.Tensor, k: int = 10) -> str:
        """The fastest one-query search on this shard, each candidate timed once (milliseconds)."""
        if not s.device.startswith("cuda"):
            return "mv"
        kernels = ["mv", "mm"]
        if _triton_ready(s.device):
            kernels += ["triton", "fused:64:4", "blocks:128:4", "blocks:256:8", "blocks:512:8"]
        best, best_t = "mv", float("inf")
        for kernel in kernels:
            try:
                for _ in range(3):
                    self._one_query(s, q, k, kernel)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(10):
                    self._one_query(s, q, k, kernel)
                end.record()
                end.synchronize()
                t = start.elapsed_time(end)
            except Exception:  # a kernel that does not build here is simply not chosen
                continue
            if t < best_t:
                best, best_t = kernel, t
        return best

    def _search_shard_one(self, s: _Shard, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        kk = min(k, s.n)
        kernel = self._kernel_for(s, q, kk)
        if not (self.use_graphs and s.device.startswith("cuda")):
            return self._one_query(s, q, kk, kernel)
        graph = s.graphs.get(kk)
        if graph is None:
            graph = _GraphedSearch(lambda qq: self._one_query(s, qq, kk, kernel), q)
            s.graphs[kk] = graph
        return graph(q)

    @torch.inference_mode()
    def search_tensors(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k ``(scores, ids)`` as tensors on the first device (no host copy: for timing)."""
        parts_v, parts_i = [], []
        home = self.devices[0]
        for s in self.shards:
            if s.n == 0:
                continue
            q = queries.to(s.device, s.dtype)
            one = q.shape[0] == 1 and s.device.startswith("cuda")
            v, i = self._search_shard_one(s, q[0], k) if one else self._search_shard_many(s, q, k)
            parts_v.append(v.to(home))
            parts_i.append(i.to(home))
        if not parts_v:
            empty = torch.empty(queries.shape[0], 0)
            return empty, empty.long()
        if len(parts_v) == 1:
            return parts_v[0], parts_i[0]
        v = torch.cat(parts_v, dim=1)
        i = torch.cat(parts_i, dim=1)
        best, j = torch.topk(v, min(k, v.shape[1]), dim=1)
        return best, torch.gather(i, 1, j)

    def search(self, queries: np.ndarray | torch.Tensor, k: int) -> SearchResult:
        q = torch.as_tensor(queries)
        if q.ndim == 1:
            q = q.unsqueeze(0)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dim {q.shape[1]}, the index holds dim {self.dim}")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        v, i = self.search_tensors(q, k)
        return _pad_result(v, i, k)

    def search_subset(self, query: np.ndarray, k: int, allowed: Sequence[int]) -> SearchResult:
        """Top-k of one query among the rows whose ids are in ``allowed``."""
        allow = torch.as_tensor(np.asarray(allowed, dtype=np.int64))
        vs, is_ = [], []
        for s in self.shards:
            if s.n == 0:
                continue
            mask = torch.isin(s.ids[: s.n], allow.to(s.device))
            if not bool(mask.any()):
                continue
            x = s.x[: s.n][mask]
            q = torch.as_tensor(query).reshape(1, -1).to(s.device, s.dtype)
            scores = (q @ x.T)[0]
            v, j = torch.topk(scores, min(k, x.shape[0]))
            vs.append(v.float().cpu())
            is_.append(s.ids[: s.n][mask][j].cpu())
        if not vs:
            return _pad_result(torch.empty(1, 0), torch.empty(1, 0, dtype=torch.int64), k)
        v, i = torch.cat(vs), torch.cat(is_)
        best, j = torch.topk(v, min(k, v.shape[0]))
        return _pad_result(best.unsqueeze(0), i[j].unsqueeze(0), k)


class _GraphedSearch:
    """A one-query search captured as a CUDA graph and replayed with a new query each call."""

    def __init__(self, fn: Any, example: torch.Tensor) -> None:
        self.q = example.clone()
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn(self.q)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.q)

    def __call__(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.q.copy_(q)
        self.graph.replay()
        return self.out


def _triton_ready(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# -- FAISS --------------------------------------------------------------------------------------
def faiss_gpu_count() -> int:
    """Number of GPUs FAISS can use: 0 without faiss-gpu (the faiss-cpu wheel has no GPU code)."""
    try:
        import faiss
    except ImportError:
        return 0
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


class FaissIndex:
    """A FAISS inner-product index, on the CPU or cloned to the GPUs (sharded across several).

    ``gpus``: ``0`` keeps it on the CPU; ``-1`` uses every GPU FAISS sees. With several GPUs the
    rows are sharded (each GPU holds a part, results merged), as ``index_cpu_to_all_gpus`` with
    ``shard=True`` does; vectors are stored in fp16 on the GPUs.
    """

    def __init__(self, dim: int, factory: str = "Flat", *, gpus: int = 0, cpu_index: Any = None) -> None:
        try:
            import faiss
        except ImportError as exc:
            raise ImportError("FAISS is not installed: pip install faiss-cpu (or the 'gpu' extra)") from exc
        self.dim = dim
        index = cpu_index or faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if gpus:
            available = faiss_gpu_count()
            if available == 0:
                raise RuntimeError(
                    "faiss-gpu is not installed or sees no GPU; install the 'gpu' extra "
                    "(faiss-gpu-cu12) or use TorchExactIndex"
                )
            n = available if gpus < 0 else min(gpus, available)
            if n > 1:
                co = faiss.GpuMultipleClonerOptions()
                co.shard = True
                co.useFloat16 = True
                index = faiss.index_cpu_to_all_gpus(index, co=co, ngpu=n)
            else:
                self._res = faiss.StandardGpuResources()
                co1 = faiss.GpuClonerOptions()
                co1.useFloat16 = True
                index = faiss.index_cpu_to_gpu(self._res, 0, index, co1)
        self.name = f"faiss-{'gpu' if gpus else 'cpu'}"
        self.index = faiss.IndexIDMap2(index) if not _has_ids(index) else index

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, ids = self.index.search(q, k)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return SearchResult(scores, ids.astype(np.int64))


def _has_ids(index: Any) -> bool:
    return type(index).__name__.startswith("IndexIDMap")


BACKENDS = ("faiss-gpu", "torch", "faiss-cpu")


def choose_backend(prefer: str = "auto") -> str:
    """The exact-search backend: ``faiss-gpu``, ``torch`` or ``faiss-cpu``. ``auto`` takes the
    first one available: faiss-gpu if installed and a GPU is present, else torch on CUDA, else
    FAISS on the CPU; a named one is returned as it is."""
    if prefer not in ("auto", *BACKENDS):
        raise ValueError(f"unknown search backend '{prefer}'; use auto, faiss-gpu, torch or faiss-cpu")
    if prefer != "auto":
        return prefer
    if faiss_gpu_count() > 0:
        return "faiss-gpu"
    if torch.cuda.is_available():
        return "torch"
    return "faiss-cpu"
