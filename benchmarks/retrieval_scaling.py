"""Vector index build time and query latency at 10k, 100k and 1M vectors on the CPU.

Synthetic unit vectors of 384 dimensions (all-MiniLM-L6-v2's size), drawn around
random cluster centres so that nearest neighbours exist (uniform random vectors
have none, which makes approximate indexes look worse than on real embeddings);
each query is a database vector plus noise. For each size and index type it
reports build time (IVF training included), single-query latency (top-10, whole
index), latency restricted to a 100-id scope (one document), recall@10 against
exact search, deleting 1,000 ids, and save/load time.

    .venv/bin/python -m benchmarks.retrieval_scaling [--sizes 10000,100000,1000000] [--hnsw-max 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from indexes.vector import VectorIndex, choose_factory

DIM = 384


def synthetic(n: int, dim: int = DIM, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        x = centres[rng.integers(0, clusters, e - s)] + 0.6 * rng.normal(size=(e - s, dim)).astype(np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class Row:
    n: int
    factory: str
    build_s: float
    query_ms_p50: float
    query_ms_p95: float
    scoped_query_ms_p50: float
    recall_at_10: float
    delete_1000_ms: float
    save_s: float
    load_s: float
    file_mb: float


def measure(x: np.ndarray, factory: str, queries: np.ndarray, truth: list[set[int]], nprobe: int) -> Row:
    n = x.shape[0]
    t0 = time.perf_counter()
    index = VectorIndex(DIM, factory, nprobe=nprobe)
    for s in range(0, n, 200_000):
        index.add(list(range(s, min(n, s + 200_000))), x[s : s + 200_000])
    build = time.perf_counter() - t0
    lat, hits = [], 0
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        got = index.search(q, 10)
        lat.append(1000 * (time.perf_counter() - t0))
        hits += len({i for i, _ in got} & t)
    rng = np.random.default_rng(1)
    scoped = []
    for q in queries[:100]:
        allowed = rng.integers(0, n, 100).tolist()
        t0 = time.perf_counter()
        index.search(q, 10, allowed=allowed)
        scoped.append(1000 * (time.perf_counter() - t0))
    t0 = time.perf_counter()
    index.remove(rng.choice(n, 1000, replace=False).tolist())
    delete_ms = 1000 * (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as d:
        path = Path(d) / "index.faiss"
        t0 = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t0
        size = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        VectorIndex.load(path, DIM, factory)
        load_s = time.perf_counter() - t0
    lat.sort()
    scoped.sort()
    return Row(
        n,
        index.factory,
        round(build, 2),
        round(statistics.median(lat), 2),
        round(lat[int(0.95 * len(lat)) - 1], 2),
        round(statistics.median(scoped), 2),
        round(hits / (10 * len(queries)), 3),
        round(delete_ms, 1),
        round(save_s, 2),
        round(load_s, 2),
        round(size, 1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="largest size to build HNSW32 at")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's default)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/longqa-bench/scaling.json"))
    args = ap.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rows: list[Row] = []
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, FAISS threads {faiss.omp_get_max_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(machine, flush=True)
    print("| vectors | index | build s | query ms p50 | p95 | scoped query ms | recall@10 | delete 1k ms "
          "| save s | load s | MB |", "|---" * 11 + "|", sep="\n", flush=True)  # fmt: skip
    for n in (int(s) for s in args.sizes.split(",")):
        x = synthetic(n)
        rng = np.random.default_rng(2)
        qi = rng.choice(n, args.queries, replace=False)
        queries = x[qi] + 0.05 * rng.normal(size=(args.queries, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth = []
        for s in range(0, args.queries, 50):
            sims = queries[s : s + 50] @ x.T
            truth += [set(np.argpartition(-row, 10)[:10].tolist()) for row in sims]
        factories = ["Flat"]
        if choose_factory(n) != "Flat":
            factories.append("auto")
        if n <= args.hnsw_max:
            factories.append("HNSW32")
        for f in factories:
            row = measure(x, choose_factory(n) if f == "auto" else f, queries, truth, args.nprobe)
            rows.append(row)
            r = asdict(row)
            print("| " + " | ".join(str(r[k]) for k in r) + " |", flush=True)
        del x
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.machine(),
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
