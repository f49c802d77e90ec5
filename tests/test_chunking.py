"""Chunk invariants on real documents: exact spans, page ranges, token budget, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.loaders import load_document
from pipeline.tokens import HFTokenCounter
from pipeline.types import Document, Span
from tests.conftest import shared


@pytest.fixture(scope="module")
def counter(embedder):  # type: ignore[no-untyped-def]
    return HFTokenCounter(embedder.tokenizer_dir)


@pytest.mark.parametrize(
    "rel",
    [
        "pdf/docling_redp5110_sampled.pdf",
        "pdf/plumber_federal-register-2020-17221.pdf",
        "lara/32k/financial/2024-Cepton, Inc.-j.txt",
    ],
)
def test_chunk_invariants(rel: str, counter) -> None:  # type: ignore[no-untyped-def]
    doc = load_document(shared(rel))
    cfg = ChunkingConfig(max_tokens=240, overlap_tokens=40)
    chunks = chunk_document(doc, counter, cfg)
    assert len(chunks) > 5
    for c in chunks:
        assert doc.text[c.span.start : c.span.end] == c.text
        assert c.text == c.text.strip() and c.text
        # The token count is real: re-count the chunk with the encoder's tokenizer.
        assert counter.count([c.text])[0] <= cfg.max_tokens + 2
        if doc.pages:
            touched = [p.page for p in doc.pages if p.span.overlaps(c.span)]
            assert c.pages == (min(touched), max(touched))
    # Every non-space character of the document is in some chunk.
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.span.start : c.span.end] = b"\x01" * len(c.text)
    assert all(covered[i] or doc.text[i].isspace() for i in range(len(doc.text)))
    # Neighbours overlap or touch; ordinals follow document order.
    for a, b in zip(chunks, chunks[1:]):
        assert b.ordinal == a.ordinal + 1 and a.span.start < b.span.start


def test_chunks_respect_the_encoder_window(counter, embedder) -> None:  # type: ignore[no-untyped-def]
    doc = load_document(shared("lara/32k/book/The Pearl.txt"))
    chunks = chunk_document(
        doc, counter, ChunkingConfig(max_tokens=embedder.max_tokens - 2, overlap_tokens=0)
    )
    assert max(counter.count([c.text for c in chunks])) <= embedder.max_tokens


def test_pages_for_spans_crossing_pages() -> None:
    doc = load_document(shared("pdf/docling_multi_page.pdf"))
    assert doc.pages is not None
    p1, p2 = doc.pages[0], doc.pages[1]
    assert doc.pages_for(Span(p1.span.end - 5, p2.span.start + 5)) == (1, 2)
    assert doc.pages_for(Span(p2.span.start, p2.span.start + 1)) == (2, 2)


@pytest.mark.parametrize("boundary", ["sentence", "paragraph", "token"])
def test_boundaries_keep_the_invariants(boundary: str, counter) -> None:  # type: ignore[no-untyped-def]
    doc = load_document(shared("lara/32k/paper/32k_paper_0.md"))
    cfg = ChunkingConfig(max_tokens=600, overlap_tokens=100, boundary=boundary)  # type: ignore[arg-type]
    chunks = chunk_document(doc, counter, cfg)
    assert len(chunks) > 10
    counts = counter.count([c.text for c in chunks])
    for c, n in zip(chunks, counts):
        assert doc.text[c.span.start : c.span.end] == c.text
        assert n <= cfg.max_tokens + 2
    for a, b in zip(chunks, chunks[1:]):
        # Neighbours overlap, or only white space lies between them.
        assert a.span.start < b.span.start
        assert b.span.start <= a.span.end or not doc.text[a.span.end : b.span.start].strip()
    ends = [doc.text[c.span.end : c.span.end + 3] for c in chunks[:-1]]
    if boundary == "paragraph":
        # Most chunks end where a paragraph ends (a blank line follows).
        assert sum(e.startswith("\n\n") or e.startswith("\n") for e in ends) >= 0.8 * len(ends)
    if boundary == "sentence":
        assert sum(
            doc.text[c.span.end - 1] in ".!?\"')]*:|" or e.startswith("\n") for c, e in zip(chunks, ends)
        ) >= (0.8 * len(ends))
    if boundary == "token":
        # Fixed windows: nearly full, whatever the sentences.
        assert np.mean(counts[:-1]) > 0.95 * cfg.max_tokens


def test_lara_baseline_and_bad_boundaries() -> None:
    cfg = ChunkingConfig.lara_baseline()
    assert (cfg.max_tokens, cfg.overlap_tokens, cfg.boundary) == (600, 100, "sentence")
    with pytest.raises(ValueError, match="unknown chunk boundary 'page'"):
        ChunkingConfig(boundary="page")  # type: ignore[arg-type]


def test_a_200000_character_word_is_split_with_the_encoder_tokenizer(counter) -> None:  # type: ignore[no-untyped-def]
    """WordPiece counts any word over 100 characters as one [UNK]: the chunker must not
    believe it, or the word becomes one 200,000-character chunk that no prompt can hold."""
    assert counter.count(["a" * 200_000]) == [1]  # the tokenizer's view, for the record
    text = "A first sentence. " + "a" * 200_000 + " A last sentence."
    doc = Document("d", "w.txt", "text", text, "h")
    cfg = ChunkingConfig(max_tokens=240, overlap_tokens=40)
    chunks = chunk_document(doc, counter, cfg)
    assert len(chunks) > 100
    assert max(len(c.text) for c in chunks) <= cfg.max_tokens * cfg.max_chars_per_token
    assert all(c.n_tokens <= cfg.max_tokens for c in chunks)
    assert all(doc.text[c.span.start : c.span.end] == c.text for c in chunks)
    assert chunks[0].text.startswith("A first sentence.") and chunks[-1].text.endswith("A last sentence.")
