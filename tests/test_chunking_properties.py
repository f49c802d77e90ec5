"""Chunker invariants, property-based (hypothesis) over arbitrary texts and settings, with
tokenizer-free counters so each example takes microseconds."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.chunking import ChunkingConfig, chunk_document
from pipeline.tokens import RegexTokenCounter, TokenCounter
from pipeline.types import Document, Span, TimedSegment


class CharCounter:
    """Every non-space character is a token (like byte-level tokenizers on rare scripts)."""

    name = "chars"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [sum(not ch.isspace() for ch in t) for t in texts]


class WordPieceLikeCounter:
    """Words and punctuation, but a word over 100 characters is one token, as WordPiece's
    [UNK] makes it (the all-MiniLM encoder counts a 200,000-character word as 1 token)."""

    name = "wordpiece-like"
    _WORD = re.compile(r"\w+|[^\w\s]")

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(self._WORD.findall(t)) for t in texts]


def doc_of(text: str, segments: tuple[TimedSegment, ...] | None = None) -> Document:
    return Document("d0", "x.txt", "text", text, "h0", segments=segments)


def check_invariants(doc: Document, counter: TokenCounter, cfg: ChunkingConfig) -> None:
    chunks = chunk_document(doc, counter, cfg)
    text = doc.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert len({c.chunk_id for c in chunks}) == len(chunks)  # the store's UNIQUE key
    for c in chunks:
        assert text[c.span.start : c.span.end] == c.text
        assert c.text and c.text == c.text.strip()
        # Within the budget, counted by the counter and by the non-space floor.
        assert counter.count([c.text])[0] <= cfg.max_tokens
        assert sum(not ch.isspace() for ch in c.text) <= cfg.max_tokens * cfg.max_chars_per_token
        assert c.n_tokens <= cfg.max_tokens
    for a, b in zip(chunks, chunks[1:]):
        assert a.span.start < b.span.start and a.span.end < b.span.end  # strictly advancing
        assert b.span.start <= a.span.end or not text[a.span.end : b.span.start].strip()
    # Every non-space character is in a chunk (only white space may be left out).
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.span.start : c.span.end] = b"\x01" * len(c.text)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    assert bool(chunks) == bool(text.strip())


# Texts built from the pieces that broke chunkers: words, long words without spaces,
# whitespace runs (blank lines, tabs, odd unicode spaces), table rows of short cells,
# sentence ends, and any unicode.
_PIECES = st.one_of(
    st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}(,[0-9]{3}){0,2}", fullmatch=True),
    st.sampled_from(
        [" ", "  ", "\n", "\n\n", "\n\n\n", "\t", ". ", ".\n\n", "\u00a0", "\u2029", "\r\n", "| "]
    ),
    st.builds(lambda n, ch: ch * n, st.integers(101, 3000), st.sampled_from("ax9\u00e9\u4e2d")),
    st.text(min_size=1, max_size=8),
)
TEXTS = st.lists(_PIECES, min_size=0, max_size=120).map("".join)
CONFIGS = st.builds(
    lambda mt, ov_frac, boundary, cpt: ChunkingConfig(mt, int(ov_frac * mt) % mt, boundary, cpt),
    st.integers(8, 80),
    st.floats(0, 0.99),
    st.sampled_from(["sentence", "paragraph", "token"]),
    st.sampled_from([1, 4, 8]),
)
COUNTERS = st.sampled_from([RegexTokenCounter(), CharCounter(), WordPieceLikeCounter()])
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TEXTS, CONFIGS, COUNTERS)
def test_chunk_invariants_hold_for_any_text(text: str, cfg: ChunkingConfig, counter: TokenCounter) -> None:
    check_invariants(doc_of(text), counter, cfg)


def _table_then_note(rows: int, cells: list[str], tail: str) -> str:
    table = "\n".join(f"Line {r}   " + "   ".join(cells) for r in range(rows))
    return table + "\n\n" + tail


@FAST
@given(
    st.integers(1, 80),
    st.lists(st.from_regex(r"[0-9]{1,3},[0-9]{3}", fullmatch=True), min_size=1, max_size=6),
    st.sampled_from(
        [
            "See accompanying notes to consolidated financial statements.\n\n\nF-7\n",
            "Total\n\n\n\n12\n",
            "x\n",
            "Notes.   \n \n\t\nF-7",
        ]
    ),
    CONFIGS,
)
def test_tables_of_short_lines_then_a_short_paragraph(
    rows: int, cells: list[str], tail: str, cfg: ChunkingConfig
) -> None:
    check_invariants(doc_of(_table_then_note(rows, cells, tail)), RegexTokenCounter(), cfg)


@FAST
@given(st.lists(st.one_of(TEXTS, st.just("")), min_size=1, max_size=30), CONFIGS, COUNTERS)
def test_transcripts_keep_the_invariants(cues: list[str], cfg: ChunkingConfig, counter: TokenCounter) -> None:
    cues = [c.strip() or "ok" for c in cues]
    parts, segs, offset = [], [], 0
    for k, cue in enumerate(cues):
        if parts:
            parts.append("\n")
            offset += 1
        parts.append(cue)
        segs.append(TimedSegment(k, float(k), k + 1.0, Span(offset, offset + len(cue))))
        offset += len(cue)
    check_invariants(doc_of("".join(parts), tuple(segs)), counter, cfg)


def test_the_10k_statement_page_that_was_refused() -> None:
    """The reported case: a long table, then a short note and a page number. The overlap
    stepped back onto a white-space-only unit and the next unit did not fit, so two chunks
    had the same span (and the same chunk id: the store refused the document)."""
    table = "\n".join(f"Revenue {i}   1,234   5,678   9,012" for i in range(60))
    text = table + "\n\nSee accompanying notes to consolidated financial statements.\n\n\nF-7\n"
    for mt in range(8, 40):
        for ov in range(mt):
            cfg = ChunkingConfig(mt, ov)
            check_invariants(doc_of(text), RegexTokenCounter(), cfg)
    chunks = chunk_document(doc_of(text), RegexTokenCounter(), ChunkingConfig(9, 8))
    notes = [c for c in chunks if c.text.startswith("See accompanying")]
    assert len(notes) == 1 and chunks[-1].text == "F-7"


def test_a_word_of_200000_characters_is_cut_within_the_budget() -> None:
    text = "Intro sentence. " + "a" * 200_000 + " The end."
    cfg = ChunkingConfig(240, 40)
    chunks = chunk_document(doc_of(text), WordPieceLikeCounter(), cfg)
    assert len(chunks) >= 200_000 // (240 * 8)
    assert max(len(c.text) for c in chunks) <= 240 * 8
    assert "".join(c.text for c in chunks if set(c.text) == {"a"}).count("a") >= 190_000
    check_invariants(doc_of(text), WordPieceLikeCounter(), cfg)
