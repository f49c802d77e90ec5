"""Exact vector search on the GPU (torch) against the stock torch way and faiss-cpu on 16 cores.

Vectors are synthetic but clustered like text embeddings: 16,384 random unit centres, each point
a centre plus Gaussian noise (cosine to its centre about 0.7), normalised; queries are fresh
points from the same mixture. d = 384 (all-MiniLM-L6-v2). Search speed does not depend on the
values, but IVF recall does, which is why the points are clustered rather than uniform.

    python benchmarks/gpu_search.py --out $OUT/search.json      # on the GPU machine
    python benchmarks/gpu_search.py --smoke                     # a tiny dry run on the CPU

faiss-cpu comes from a wheel carried to the GPU machine (see docs/gpu.md); without it the CPU
column is skipped.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from typing import Any

import numpy as np
import torch  # noqa: E402
from gpu_common import cuda_times, device_info, fmt, measure_ceilings, p50, sync, wall, write_report

from gpu.search import TorchExactIndex  # noqa: E402


def clustered(n: int, dim: int, centres: torch.Tensor, gen: torch.Generator, device: str) -> torch.Tensor:
    """``n`` unit vectors around the centres, made in blocks on the device (float16)."""
    out = torch.empty(n, dim, device=device, dtype=torch.float16)
    block = 1 << 20
    for a in range(0, n, block):
        b = min(n, a + block)
        which = torch.randint(0, centres.shape[0], (b - a,), device=device, generator=gen)
        x = centres[which] + 1.0 / dim**0.5 * torch.randn(b - a, dim, device=device, generator=gen)
        out[a:b] = torch.nn.functional.normalize(x, dim=-1).half()
    return out


def stock_search(x: torch.Tensor, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The stock way: one fp16 matmul over the whole matrix, then torch.topk."""
    return torch.topk(q @ x.T, k, dim=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


def time_one_query(fn: Any, queries: torch.Tensor, reps: int, on_gpu: bool) -> float:
    """p50 seconds of one-query searches, rotating over different queries."""
    n_q = queries.shape[0]
    if on_gpu:
        return p50(cuda_times(lambda i: fn(queries[i % n_q : i % n_q + 1]), reps=reps, warmup=10))
    return p50(wall(lambda: fn(queries[:1]), reps=reps, warmup=1))


def torch_part(n: int, dim: int, k: int, n_batch: int, device: str, reps: int) -> dict[str, Any]:
    gen = torch.Generator(device=device).manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(16384, dim, device=device, generator=gen), dim=-1)
    x = clustered(n, dim, centres, gen, device)
    queries = clustered(max(n_batch, 64), dim, centres, gen, device)
    res: dict[str, Any] = {"n": n, "dim": dim, "k": k}
    on_gpu = device == "cuda"
    bytes_scanned = n * dim * x.element_size()
    res["bandwidth_floor_ms"] = None
    # Stock: fp16 matmul + topk.
    res["stock_one_query_ms"] = 1e3 * time_one_query(lambda q: stock_search(x, q, k), queries, reps, on_gpu)
    batch = queries[:n_batch]
    try:
        res[f"stock_{n_batch}_queries_ms"] = 1e3 * p50(wall(lambda: stock_search(x, batch, k), 5, warmup=1))
    except torch.OutOfMemoryError:
        res[f"stock_{n_batch}_queries_ms"] = None
    # Ground truth in float32 (chunked on the device), to score recall of the fp16 searches.
    exact = TorchExactIndex(dim, devices=[device], dtype="float32")
    exact.add(np.arange(n), x)
    truth = exact.search_tensors(batch.float(), k)[1].cpu().numpy()
    del exact
    gc.collect()
    stock_ids = torch.cat([stock_search(x, batch[i : i + 100], k)[1] for i in range(0, n_batch, 100)])
    res["stock_recall_vs_fp32"] = recall(stock_ids.cpu().numpy(), truth)
    if on_gpu:  # the scoring kernels alone (one query, the whole matrix)
        probe = TorchExactIndex(dim, devices=[device])
        probe.add(np.arange(n), x)
        sh = probe.shards[0]
        for kernel in ("mv", "mm", "triton"):
            try:
                t = time_one_query(
                    lambda q, kernel=kernel: probe._single_scores(sh, q[0], kernel), queries, reps, True
                )
                res[f"scores_only_{kernel}_ms"] = 1e3 * t
            except Exception as exc:
                res[f"scores_only_{kernel}_error"] = repr(exc)[:300]
        res["auto_kernel"] = probe._pick_kernel(sh, queries[0], k)
        del probe
    # Ours, one query: the kernel picked automatically, and each kernel, with CUDA graphs or not.
    variants = (
        [
            ("auto", True),
            ("auto", False),
            ("mv", True),
            ("triton", True),
            ("fused", True),
            ("fused:64:4", True),
            ("blocks:128:4", True),
            ("blocks:256:8", True),
        ]
        if on_gpu
        else [("mv", False)]
    )
    best = None
    for kernel, graphs in variants:
        name = f"ours_one_query_{kernel}{'_graph' if graphs else ''}_ms"
        try:
            idx = TorchExactIndex(dim, devices=[device], single_query=kernel, graphs=graphs)
            idx.add(np.arange(n), x)
            ms = 1e3 * time_one_query(lambda q, idx=idx: idx.search_tensors(q, k), queries, reps, on_gpu)
            got = np.concatenate(
                [idx.search_tensors(batch[i : i + 1], k)[1].cpu().numpy() for i in range(50)]
            )
            res[name] = ms
            res[name.replace("_ms", "_recall_vs_fp32")] = recall(got, truth[:50])
            if best is None or ms < best[1]:
                best = (name, ms)
            idx = None
        except Exception as exc:
            res[name] = None
            res[name.replace("_ms", "_error")] = repr(exc)[:300]
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()
    res["ours_best_one_query"] = best
    idx = TorchExactIndex(dim, devices=[device])
    idx.add(np.arange(n), x)
    for budget in (256 << 20, 1 << 30, 4 << 30):
        idx.memory_budget_bytes = budget
        ms = 1e3 * p50(wall(lambda: idx.search_tensors(batch, k), 5, warmup=1))
        res[f"ours_{n_batch}_queries_budget_{budget >> 20}MiB_ms"] = ms
    got = idx.search_tensors(batch, k)[1].cpu().numpy()
    res[f"ours_{n_batch}_queries_recall_vs_fp32"] = recall(got, truth)
    res["bytes_scanned"] = bytes_scanned
    idx = x = None
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()
    return res


def faiss_part(n: int, dim: int, k: int, n_batch: int, reps: int, target: float = 0.95) -> dict[str, Any]:
    try:
        import faiss
    except ImportError:
        return {"skipped": "faiss is not installed (carry the faiss-cpu wheel)"}
    threads = os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)
    gen = torch.Generator().manual_seed(1)
    centres = torch.nn.functional.normalize(torch.randn(16384, dim, generator=gen), dim=-1)
    x = clustered(n, dim, centres, gen, "cpu").float().numpy()
    q = clustered(n_batch, dim, centres, gen, "cpu").float().numpy()
    res: dict[str, Any] = {"n": n, "threads": threads, "faiss": faiss.__version__}
    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    res["flat_one_query_ms"] = 1e3 * p50(wall(lambda: flat.search(q[:1], k), reps, warmup=2))
    t0 = time.perf_counter()
    _, truth = flat.search(q, k)
    res[f"flat_{n_batch}_queries_ms"] = 1e3 * (time.perf_counter() - t0)
    nlist = max(16, int(n**0.5))
    ivf = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    ivf.train(x)
    ivf.add(x)
    res["ivf"] = {"nlist": nlist, "build_s": time.perf_counter() - t0, "sweep": {}}
    chosen = None
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        ivf.nprobe = nprobe
        t0 = time.perf_counter()
        _, found = ivf.search(q, k)
        batch_ms = 1e3 * (time.perf_counter() - t0)
        r = recall(found, truth)
        res["ivf"]["sweep"][nprobe] = {"recall_at_10": r, f"{n_batch}_queries_ms": batch_ms}
        if r >= target:
            chosen = nprobe
            break
    if chosen:
        ivf.nprobe = chosen
        res["ivf"]["nprobe"] = chosen
        res["ivf"]["one_query_ms"] = 1e3 * p50(wall(lambda: ivf.search(q[:1], k), reps, warmup=2))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--skip-10m", action="store_true")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dim, k, n_batch = 384, 10, 1000
    sizes = [5_000] if args.smoke else [1_000_000] + ([] if args.skip_10m else [10_000_000])
    reps = 3 if args.smoke else 200
    payload: dict[str, Any] = {"device": device_info(), "ceilings": {} if args.smoke else measure_ceilings()}
    copy_bw = payload["ceilings"].get("copy_tb_s")
    payload["torch"] = []
    for n in sizes:
        r = torch_part(n, dim, k, n_batch, device, reps)
        if copy_bw:
            r["bandwidth_floor_ms"] = 1e3 * r["bytes_scanned"] / (copy_bw * 1e12)
        payload["torch"].append(r)
        print(r, flush=True)
    payload["faiss_cpu"] = faiss_part(sizes[0], dim, k, n_batch, reps=20 if not args.smoke else 3)
    print(payload["faiss_cpu"], flush=True)
    sync()
    table = [["method", "N", "1 query p50 (ms)", f"{n_batch} queries (ms)", "x stock (1 query)"]]
    for r in payload["torch"]:
        stock = r["stock_one_query_ms"]
        table.append(
            [
                "torch fp16 matmul + topk (stock)",
                f"{r['n']:,}",
                fmt(stock, 3),
                fmt(r[f"stock_{n_batch}_queries_ms"]),
                "1.00",
            ]
        )
        name, ms = r["ours_best_one_query"] or ("-", None)
        batch = min(v for key, v in r.items() if key.startswith(f"ours_{n_batch}_queries_budget"))
        table.append(
            [
                f"gpu.search TorchExactIndex ({name})",
                f"{r['n']:,}",
                fmt(ms, 3),
                fmt(batch),
                fmt(stock / ms if ms else None),
            ]
        )
        table.append(["memory-bandwidth floor", f"{r['n']:,}", fmt(r["bandwidth_floor_ms"], 3), "-", "-"])
    f = payload["faiss_cpu"]
    if "flat_one_query_ms" in f:
        table.append(
            [
                f"faiss-cpu IndexFlatIP ({f['threads']} threads)",
                f"{f['n']:,}",
                fmt(f["flat_one_query_ms"], 3),
                fmt(f[f"flat_{n_batch}_queries_ms"]),
                "-",
            ]
        )
        ivf = f["ivf"]
        if "nprobe" in ivf:
            sweep = ivf["sweep"][ivf["nprobe"]]
            table.append(
                [
                    f"faiss-cpu IVF{ivf['nlist']},Flat nprobe={ivf['nprobe']} "
                    f"(recall@10 {sweep['recall_at_10']:.3f})",
                    f"{f['n']:,}",
                    fmt(ivf["one_query_ms"], 3),
                    fmt(sweep[f"{n_batch}_queries_ms"]),
                    "-",
                ]
            )
    write_report(args.out, "gpu_search", payload, table)


if __name__ == "__main__":
    main()
