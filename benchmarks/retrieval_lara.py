"""Retrieval recall on LaRA 32k location questions (figures in docs/retrieval.md).

For each location question (one place in its document holds the answer) this
measures whether a chunk holding the gold evidence (``is_evidence`` in
``benchmarks/retrieval_data.py``) is among the top-k chunks retrieved from that
document, for dense, BM25, hybrid and rescored retrieval, through the project's
own ``HybridRetriever`` over a real metadata store and FAISS index.

    .venv/bin/python -m benchmarks.retrieval_lara                 # all tables
    .venv/bin/python -m benchmarks.retrieval_lara --embed-only --device cuda   # only fill the cache

Vectors are cached under /tmp/longqa-bench/vectors (content-addressed, one
folder per chunking and encoder setting), so a second run only retrieves; the
first run embeds every LaRA 32k document once per setting (an hour on 2 busy
cores, seconds on a GPU: ``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.retrieval_cache import DEFAULT_DIR
from benchmarks.retrieval_data import (
    LARA,
    VARIANTS,
    ChunkVectors,
    Question,
    chunk_corpus,
    chunking_tag,
    embed_variant,
    is_evidence,
    load_documents,
    load_questions,
    model_dir,
)
from indexes.bm25 import BM25Config, BM25Index
from indexes.hybrid import HybridRetriever, RetrievalConfig
from indexes.vector import VectorIndex
from pipeline.chunking import ChunkingConfig
from pipeline.store import MetadataStore
from pipeline.types import Chunk, Document

WORK = Path("/tmp/longqa-bench")
KS = (1, 2, 3, 5, 10)


# -- the corpus in a real store ----------------------------------------------------------------
@dataclass
class Corpus:
    cfg: ChunkingConfig
    docs: dict[str, Document]
    questions: list[Question]
    chunks: list[Chunk]
    vec_ids: np.ndarray  # row-aligned with chunks
    store: MetadataStore
    gold: list[set[int]]  # vec_ids of the evidence chunks of each question
    row_of: dict[int, int] = field(default_factory=dict)

    @property
    def matchable(self) -> list[int]:
        return [i for i, g in enumerate(self.gold) if g]


def build_corpus(cfg: ChunkingConfig, docs: dict[str, Document], questions: list[Question]) -> Corpus:
    per_doc = chunk_corpus(docs, cfg)
    WORK.mkdir(parents=True, exist_ok=True)
    db = WORK / f"store-{chunking_tag(cfg)}.db"
    db.unlink(missing_ok=True)
    store = MetadataStore(f"sqlite:///{db}")
    chunks: list[Chunk] = []
    vec_ids: list[int] = []
    for key in sorted(per_doc):
        # The benchmark searches its own flat index; the store only maps ids to chunks.
        ids = store.add(docs[key], per_doc[key], np.zeros((len(per_doc[key]), 1), np.float32))
        chunks.extend(per_doc[key])
        vec_ids.extend(ids)
    by_doc: dict[str, list[int]] = {}
    for row, c in enumerate(chunks):
        by_doc.setdefault(c.doc_id, []).append(row)
    gold = [{vec_ids[r] for r in by_doc[docs[q.file].doc_id] if is_evidence(q, chunks[r])} for q in questions]
    corpus = Corpus(cfg, docs, questions, chunks, np.asarray(vec_ids), store, gold)
    corpus.row_of = {int(v): r for r, v in enumerate(vec_ids)}
    return corpus


class CachedQueries:
    """The Embedder protocol over precomputed question vectors (for recall runs)."""

    def __init__(self, questions: Sequence[Question], vectors: np.ndarray, name: str) -> None:
        self._vecs = {q.question: v for q, v in zip(questions, vectors)}
        self.name = name
        self.dim = int(vectors.shape[1])
        self.max_tokens = 256
        self.tokenizer_dir = model_dir()

    def embed(self, texts: Sequence[str], *, is_query: bool = False) -> np.ndarray:
        return np.stack([self._vecs[t] for t in texts]).astype(np.float32)


def pooled(cv: ChunkVectors, n: int, how: str) -> np.ndarray:
    """One vector per chunk from a variant's vectors: 'first' (truncation), 'mean' or 'whole'."""
    if how == "whole":
        return cv.vectors
    out = np.zeros((n, cv.vectors.shape[1]), dtype=np.float32)
    if how == "first":
        first = np.unique(cv.owners, return_index=True)[1]
        out[cv.owners[first]] = cv.vectors[first]
    else:
        np.add.at(out, cv.owners, cv.vectors)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def flat_index(corpus: Corpus, vectors: np.ndarray) -> VectorIndex:
    index = VectorIndex(vectors.shape[1], "Flat")
    index.add(corpus.vec_ids.tolist(), vectors)
    return index


# -- scoring ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    name: str
    recall: dict[int, float]
    by_kind: dict[str, dict[int, float]]
    ms_per_query: float
    n: int
    tokens_at_k: dict[int, float]


RetrieveFn = Callable[[Question, str, int], list[int]]  # question, doc_id, k -> vec_ids best first


def evaluate(corpus: Corpus, name: str, fn: RetrieveFn, ks: Sequence[int] = KS) -> Result:
    ranks: list[int | None] = []
    kinds: list[str] = []
    times: list[float] = []
    toks: dict[int, list[int]] = {k: [] for k in ks}
    n_tok = {int(v): c.n_tokens for v, c in zip(corpus.vec_ids, corpus.chunks)}
    for qi in corpus.matchable:
        q = corpus.questions[qi]
        t0 = time.perf_counter()
        got = fn(q, corpus.docs[q.file].doc_id, max(ks))
        times.append(time.perf_counter() - t0)
        ranks.append(next((r for r, v in enumerate(got) if v in corpus.gold[qi]), None))
        kinds.append(q.kind)
        for k in ks:
            toks[k].append(sum(n_tok[v] for v in got[:k]))

    def rec(rs: list[int | None]) -> dict[int, float]:
        return {k: round(sum(1 for r in rs if r is not None and r < k) / max(1, len(rs)), 3) for k in ks}

    by_kind = {kd: rec([r for r, x in zip(ranks, kinds) if x == kd]) for kd in sorted(set(kinds))}
    return Result(
        name,
        rec(ranks),
        by_kind,
        round(1000 * statistics.mean(times), 2),
        len(ranks),
        {k: round(statistics.mean(v), 0) for k, v in toks.items()},
    )


def retriever_fn(corpus: Corpus, r: HybridRetriever) -> RetrieveFn:
    vec_of = {c.chunk_id: int(v) for c, v in zip(corpus.chunks, corpus.vec_ids)}

    def fn(q: Question, doc_id: str, k: int) -> list[int]:
        return [vec_of[x.chunk.chunk_id] for x in r.retrieve(q.question, k=k, doc_ids=[doc_id])]

    return fn


def max_sim_fn(corpus: Corpus, cv: ChunkVectors) -> RetrieveFn:
    """Dense retrieval scoring each chunk by its best window (multi-vector; numpy, not the product)."""
    owners_vec = corpus.vec_ids[cv.owners]
    qvec = {q.question: v for q, v in zip(corpus.questions, cv.queries)}
    doc_rows: dict[str, np.ndarray] = {}
    for d in {c.doc_id for c in corpus.chunks}:
        vids = set(corpus.store.vec_ids_of([d]))
        doc_rows[d] = np.nonzero(np.isin(owners_vec, list(vids)))[0]

    def fn(q: Question, doc_id: str, k: int) -> list[int]:
        rows = doc_rows[doc_id]
        s = cv.vectors[rows] @ qvec[q.question]
        best: dict[int, float] = {}
        for v, x in zip(owners_vec[rows], s):
            if x > best.get(int(v), -9.0):
                best[int(v)] = float(x)
        return sorted(best, key=lambda v: -best[v])[:k]

    return fn


# -- report -----------------------------------------------------------------------------------
def table(results: Sequence[Result], ks: Sequence[int] = KS, title: str = "") -> str:
    head = (
        "| method | "
        + " | ".join(f"R@{k}" for k in ks)
        + " | book R@5 | financial R@5 | paper R@5 | ms/query |"
    )
    sep = "|---" * (len(ks) + 5) + "|"
    lines = [f"**{title}**", "", head, sep] if title else [head, sep]
    k5 = 5 if 5 in ks else ks[-1]
    for r in results:
        cells = [f"{r.recall[k]:.3f}" for k in ks]
        kinds = [
            f"{r.by_kind.get(kd, {}).get(k5, float('nan')):.3f}" for kd in ("book", "financial", "paper")
        ]
        lines.append(f"| {r.name} | " + " | ".join(cells + kinds) + f" | {r.ms_per_query} |")
    return "\n".join(lines)


def truncation_stats(corpus: Corpus, window: int = 254) -> tuple[float, float]:
    """Share of chunks longer than the encoder reads, and the mean share of a chunk it reads."""
    n = np.array([c.n_tokens for c in corpus.chunks], dtype=float)
    return float((n > window).mean()), float(np.minimum(1.0, window / np.maximum(n, 1)).mean())


# -- main -------------------------------------------------------------------------------------
def _parse(spec: str) -> ChunkingConfig:
    mx, ov, bd = spec.split("/")
    return ChunkingConfig(int(mx), int(ov), bd)  # type: ignore[arg-type]


class Bench:
    """The tables of docs/retrieval.md, one method each."""

    def __init__(
        self, args: argparse.Namespace, docs: dict[str, Document], questions: list[Question]
    ) -> None:
        self.args = args
        self.docs = docs
        self.questions = questions
        self.report: list[str] = []
        self._bm25: dict[tuple[str, BM25Config], BM25Index] = {}
        self.out: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        }

    def vectors(self, corpus: Corpus, tag: str) -> ChunkVectors:
        root = self.args.cache / chunking_tag(corpus.cfg)
        return embed_variant(VARIANTS[tag], self.docs, corpus.chunks, self.questions, self.args.device, root)

    def retriever(self, corpus: Corpus, vecs: np.ndarray, cv: ChunkVectors, **kw: object) -> HybridRetriever:
        r = HybridRetriever(
            corpus.store,
            flat_index(corpus, vecs),
            CachedQueries(self.questions, cv.queries, "minilm"),
            replace(RetrievalConfig(), **kw),  # type: ignore[arg-type]
        )
        key = (chunking_tag(corpus.cfg), r.config.bm25)
        if key not in self._bm25:  # one BM25 index per corpus and BM25 setting
            self._bm25[key] = r.bm25()
        r._bm25 = self._bm25[key]
        return r

    def run(self, corpus: Corpus, name: str, vecs: np.ndarray, cv: ChunkVectors, **kw: object) -> Result:
        res = evaluate(corpus, name, retriever_fn(corpus, self.retriever(corpus, vecs, cv, **kw)))
        print(f"  {name}: {res.recall} ({res.ms_per_query} ms/query)", flush=True)
        return res

    def add(self, key: str, rows: list[Result], title: str, ks: Sequence[int] = KS) -> None:
        self.report.append(table(rows, ks, title))
        self.out[key] = [r.__dict__ for r in rows]

    def main_tables(self, corpus: Corpus) -> list[Result]:
        n = len(corpus.chunks)
        w256 = self.vectors(corpus, "minilm-256")
        mean_v, first_v = pooled(w256, n, "mean"), pooled(w256, n, "first")
        pi = self.vectors(corpus, "minilm-pi1024")
        bm25s = BM25Config(backend="bm25s")
        rows = [
            self.run(corpus, "dense MiniLM, chunk cut at 256 tokens", first_v, w256, method="dense"),
            self.run(corpus, "dense MiniLM, 256-token windows, mean", mean_v, w256, method="dense"),
            evaluate(corpus, "dense MiniLM, 256-token windows, max (numpy)", max_sim_fn(corpus, w256)),
            self.run(corpus, "dense MiniLM + position interpolation to 1024", pi.vectors, pi, method="dense"),
            self.run(corpus, "BM25 (bm25s, corpus statistics)", mean_v, w256, method="bm25", bm25=bm25s),
            self.run(corpus, "BM25 (scope statistics + bigrams)", mean_v, w256, method="bm25"),
            self.run(corpus, "hybrid, RRF (bm25s + dense windows)", mean_v, w256, fusion="rrf", bm25=bm25s,
                     dense_weight=1.0, bm25_weight=1.0),
            self.run(corpus, "hybrid, weighted 0.85/0.15 (default)", mean_v, w256),
        ]  # fmt: skip
        from indexes.embedding import SentenceTransformerEmbedder
        from indexes.rerank import BiEncoderRescorer

        embedder = SentenceTransformerEmbedder(model_dir(), name="all-minilm-l6-v2", device=self.args.device)
        cv128 = self.vectors(corpus, "minilm-128")  # the rescorer's 126-token windows, embedded once
        for weight in (1.0, 0.3):
            r = self.retriever(corpus, mean_v, w256, rerank_weight=weight)
            r.reranker = rescorer = BiEncoderRescorer(embedder)
            for row, c in enumerate(corpus.chunks):
                rescorer.remember(c.text, cv128.vectors[cv128.owners == row])
            name = f"hybrid + bi-encoder rescoring (top 20, weight {weight:g})"
            rows.append(evaluate(corpus, name, retriever_fn(corpus, r)))
        self.add("main", rows, f"LaRA 32k location, chunks {chunking_tag(corpus.cfg)}")

        long_rows = rows[:2]
        for tag, label in (
            ("minilm-512", "MiniLM, native 512 positions (chunk cut at 510)"),
            ("minilm-pi1024", "MiniLM, position interpolation 512 -> 1024 (whole chunk)"),
            ("minilm-late512", "MiniLM, late chunking, 512-token document windows"),
            ("minilm-late-pi2048", "MiniLM, late chunking, PI to 2048-token windows"),
        ):
            cv = self.vectors(corpus, tag)
            long_rows.append(self.run(corpus, label, cv.vectors, cv, method="dense"))
            long_rows.append(self.run(corpus, "  the same in the default hybrid", cv.vectors, cv))
        long_rows.append(
            evaluate(corpus, "MiniLM, 128-token windows, max (numpy)", max_sim_fn(corpus, cv128))
        )
        self.add("long", long_rows, "Dense encoders and long-context variants")

        fusion_rows = [
            self.run(corpus, f"weighted, dense share {w:g}", mean_v, w256, dense_weight=w, bm25_weight=1 - w)
            for w in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
        ]
        fusion_rows.append(
            self.run(
                corpus, "RRF (scope BM25 + dense)", mean_v, w256, fusion="rrf", dense_weight=1, bm25_weight=1
            )
        )
        self.add("fusion", fusion_rows, "Fusion weights (scope-statistics BM25 + windowed dense)")
        if self.args.latency:
            self.latency(corpus, mean_v, embedder, w256)
        return rows

    def latency(self, corpus: Corpus, vecs: np.ndarray, embedder: object, cv: ChunkVectors) -> None:
        """The default hybrid top-5 on this CPU: end to end with each question embedded by the real
        encoder, the embedding alone, and retrieval alone (precomputed question vectors)."""
        index = flat_index(corpus, vecs)
        live = HybridRetriever(corpus.store, index, embedder, RetrievalConfig())  # type: ignore[arg-type]
        cached = HybridRetriever(
            corpus.store, index, CachedQueries(self.questions, cv.queries, "m"), RetrievalConfig()
        )
        sample = [self.questions[i] for i in corpus.matchable[: self.args.latency]]
        cached._bm25 = live.bm25()

        def timed(fn: Callable[[Question], object]) -> tuple[list[float], float]:
            """Wall-clock ms per question (sorted), and CPU ms per question (this process)."""
            fn(sample[0])  # warm up
            out = []
            c0 = time.process_time()
            for q in sample:
                t0 = time.perf_counter()
                fn(q)
                out.append(1000 * (time.perf_counter() - t0))
            return sorted(out), 1000 * (time.process_time() - c0) / len(sample)

        def pct(m: tuple[list[float], float]) -> dict[str, float]:
            xs, cpu = m
            return {
                "mean": round(statistics.mean(xs), 1),
                "p50": round(xs[len(xs) // 2], 1),
                "p95": round(xs[max(0, int(len(xs) * 0.95) - 1)], 1),
                "cpu_ms": round(cpu, 1),
            }

        stats = {
            "questions": len(sample),
            "end_to_end": pct(
                timed(lambda q: live.retrieve(q.question, k=5, doc_ids=[self.docs[q.file].doc_id]))
            ),
            "embed_question": pct(timed(lambda q: live.embedder.embed([q.question], is_query=True))),
            "retrieve_only": pct(
                timed(lambda q: cached.retrieve(q.question, k=5, doc_ids=[self.docs[q.file].doc_id]))
            ),
            "load_average": round(os.getloadavg()[0], 1),
        }
        self.out["latency_ms"] = stats
        self.report.append(f"Latency (ms), default hybrid top-5 on this CPU: {stats}")

    def budget(self, main: Corpus, rows: list[Result]) -> None:
        """Other chunk sizes at the k that retrieves about as much text as 5 chunks of 600."""
        out = [
            replace(rows[5], name=f"BM25 scope, {chunking_tag(main.cfg)}, k=5"),
            replace(rows[7], name=f"hybrid, {chunking_tag(main.cfg)}, k=5"),
            replace(rows[0], name=f"dense, chunk cut at 256, {chunking_tag(main.cfg)}, k=5"),
        ]
        budget_k = [5, 5, 5]
        trunc = {chunking_tag(main.cfg): truncation_stats(main)}
        for spec in [s for s in self.args.budget.split(",") if s]:
            chunking, k_text = spec.split(":")
            k = int(k_text)
            c2 = build_corpus(_parse(chunking), self.docs, self.questions)
            trunc[chunking_tag(c2.cfg)] = truncation_stats(c2)
            cv = self.vectors(c2, "minilm-256")
            m2, f2 = pooled(cv, len(c2.chunks), "mean"), pooled(cv, len(c2.chunks), "first")
            ks = tuple(sorted({1, 2, 3, 5, 10, k}))
            for label, vecs, kw in (
                ("BM25 scope", m2, {"method": "bm25"}),
                ("hybrid", m2, {}),
                ("dense, chunk cut at 256", f2, {"method": "dense"}),
            ):
                res = evaluate(c2, "", retriever_fn(c2, self.retriever(c2, vecs, cv, **kw)), ks)
                out.append(replace(res, name=f"{label}, {chunking_tag(c2.cfg)}, k={k} ({res.n} matchable)"))
                budget_k.append(k)
            c2.store.close()
        lines = [
            "**Fixed budget of retrieved text (recall at the k that retrieves about 3,000 tokens)**",
            "",
            "| method | R@1 | R@2 | R@5 | R@budget | tokens at budget |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.name} | {r.recall[1]:.3f} | {r.recall.get(2, float('nan')):.3f} | "
            f"{r.recall.get(5, float('nan')):.3f} | {r.recall[k]:.3f} | {r.tokens_at_k[k]:.0f} |"
            for r, k in zip(out, budget_k)
        ]
        self.report.append("\n".join(lines))
        self.out["budget"] = [r.__dict__ for r in out]
        self.out["truncation"] = trunc
        self.report.append(
            "Truncation by a 256-token encoder: "
            + "; ".join(
                f"{k}: {a:.0%} of chunks cut, {b:.0%} of chunk text read" for k, (a, b) in trunc.items()
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lara", type=Path, default=LARA)
    ap.add_argument("--cache", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--embed-only", action="store_true", help="fill the vector cache and stop")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--chunking", default="600/100/sentence", help="max/overlap/boundary[,...]")
    ap.add_argument("--limit-docs", type=int, default=0, help="smoke test: only the first N documents")
    ap.add_argument(
        "--budget",
        default="250/40/sentence:12,1024/200/sentence:3,600/100/paragraph:5,600/100/token:5",
        help="chunking:k,... compared at a fixed budget of retrieved text",
    )
    ap.add_argument("--latency", type=int, default=100, help="questions timed with the real CPU encoder")
    ap.add_argument("--latency-only", action="store_true", help="only the latency measurement")
    ap.add_argument("--out", type=Path, default=WORK / "results.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    docs = load_documents(args.lara)
    if args.limit_docs:
        docs = {k: docs[k] for k in sorted(docs)[: args.limit_docs]}
    questions = [q for q in load_questions(load_documents(args.lara), args.lara) if q.file in docs]
    if args.embed_only:
        for spec in args.chunking.split(","):
            cfg = _parse(spec)
            per_doc = chunk_corpus(docs, cfg)
            chunks = [c for k in sorted(per_doc) for c in per_doc[k]]
            for tag in args.variants.split(","):
                t0 = time.perf_counter()
                root = args.cache / chunking_tag(cfg)
                cv = embed_variant(VARIANTS[tag], docs, chunks, questions, args.device, root)
                print(f"{spec} {tag}: {cv.vectors.shape[0]} vectors, {time.perf_counter() - t0:.1f} s")
        return
    bench = Bench(args, docs, questions)
    corpus = build_corpus(_parse(args.chunking.split(",")[0]), docs, questions)
    if args.latency_only:
        from indexes.embedding import SentenceTransformerEmbedder

        w256 = bench.vectors(corpus, "minilm-256")
        embedder = SentenceTransformerEmbedder(model_dir(), name="all-minilm-l6-v2", device=args.device)
        bench.latency(corpus, pooled(w256, len(corpus.chunks), "mean"), embedder, w256)
        print("\n".join(bench.report))
        return
    rows = bench.main_tables(corpus)
    bench.budget(corpus, rows)
    unmatched = [q for q, g in zip(questions, corpus.gold) if not g]
    bench.out.update(
        chunks=len(corpus.chunks),
        questions=len(questions),
        matchable=len(corpus.matchable),
        unmatchable=[{"qid": q.qid, "question": q.question, "answer": q.answer} for q in unmatched],
    )
    bench.report.append(
        f"Unmatchable questions ({len(unmatched)} of {len(questions)}): "
        + "; ".join(f"{q.qid}: {q.question} -> {q.answer}" for q in unmatched)
    )
    corpus.store.close()
    print("\n\n".join(bench.report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(bench.out, indent=1, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
