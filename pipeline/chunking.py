"""Span-preserving, token-aware chunking.

The text is cut into units, then units are packed greedily into chunks of at
most ``max_tokens`` tokens with about ``overlap_tokens`` tokens carried over
between neighbours. ``boundary`` picks the units: ``"sentence"`` (sentences, and
lines or words where a sentence is too long), ``"paragraph"`` (paragraphs, then
sentences, lines, words) or ``"token"`` (words: fixed-size token windows that
cut anywhere between words, like LaRA's and LlamaIndex's token splitters).
Every chunk's text is exactly ``doc.text[span.start:span.end]``.

Count tokens with the encoder's own tokenizer (``HFTokenCounter``) and keep
``max_tokens`` within what the encoder reads, or embed long chunks in windows
(``indexes.embedding``); otherwise the encoder silently drops a chunk's end.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from pipeline.textspan import SENTENCE_END
from pipeline.tokens import TokenCounter
from pipeline.types import Chunk, Document, Span

_LINE_END = re.compile(r"\n")
_WORDS = re.compile(r"\S+\s*")
_PARAGRAPH = re.compile(r"\n[ \t\f\v]*\n\s*")

Boundary = Literal["sentence", "paragraph", "token"]
# Split patterns from coarsest to finest for each boundary; words are the last resort.
_LEVELS: dict[str, tuple[re.Pattern[str], ...]] = {
    "paragraph": (_PARAGRAPH, SENTENCE_END, _LINE_END, _WORDS),
    "sentence": (SENTENCE_END, _LINE_END, _WORDS),
    "token": (_WORDS,),
}


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 240
    overlap_tokens: int = 40
    boundary: Boundary = "sentence"

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError(f"overlap_tokens must be in [0, max_tokens), got {self.overlap_tokens}")
        if self.boundary not in _LEVELS:
            raise ValueError(f"unknown chunk boundary '{self.boundary}'; use one of {', '.join(_LEVELS)}")

    @classmethod
    def lara_baseline(cls) -> ChunkingConfig:
        """LaRA's RAG baseline: 600-token chunks with 100 tokens of overlap."""
        return cls(max_tokens=600, overlap_tokens=100, boundary="sentence")


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Split text[start:end] after each match of pattern; keep separators with the left piece."""
    pieces: list[tuple[int, int]] = []
    cur = start
    for m in pattern.finditer(text, start, end):
        if m.end() > cur:
            pieces.append((cur, m.end()))
            cur = m.end()
    if cur < end:
        pieces.append((cur, end))
    return pieces


def _units(
    text: str, counter: TokenCounter, max_tokens: int, boundary: Boundary = "sentence"
) -> list[tuple[int, int, int]]:
    """Units (start, end, n_tokens), each at most max_tokens, covering the whole text."""
    out: list[tuple[int, int, int]] = []
    levels = _LEVELS[boundary]
    pending = _split(text, 0, len(text), levels[0])
    finer_levels: tuple[re.Pattern[str] | None, ...] = (*levels[1:], None)
    for finer in finer_levels:
        counts = counter.count([text[a:b] for a, b in pending])
        too_long: list[tuple[int, int]] = []
        for (a, b), n in zip(pending, counts):
            if n <= max_tokens or finer is None and b - a <= 1:
                out.append((a, b, n))
            else:
                too_long.append((a, b))
        if not too_long:
            break
        if finer is None:
            # A single word longer than the budget: cut it by characters.
            for a, b in too_long:
                step = max(1, (b - a) * max_tokens // max(1, counter.count([text[a:b]])[0]))
                for s in range(a, b, step):
                    e = min(b, s + step)
                    out.append((s, e, counter.count([text[s:e]])[0]))
            break
        pending = [p for a, b in too_long for p in _split(text, a, b, finer)]
    out.sort()
    return out


def chunk_id_for(doc_id: str, span: Span) -> str:
    return hashlib.sha1(f"{doc_id}:{span.start}:{span.end}".encode()).hexdigest()[:16]


def _cue_units(doc: Document, counter: TokenCounter, max_tokens: int) -> list[tuple[int, int, int]]:
    """Transcript units are whole cues, so every chunk covers whole cues and their times.
    A single cue longer than the budget (rare) is cut into sentence/word units."""
    assert doc.segments is not None
    spans = [(s.span.start, s.span.end) for s in doc.segments]
    counts = counter.count([doc.text[a:b] for a, b in spans])
    units: list[tuple[int, int, int]] = []
    for (a, b), n in zip(spans, counts):
        if n <= max_tokens:
            units.append((a, b, n))
        else:
            units.extend((a + x, a + y, m) for x, y, m in _units(doc.text[a:b], counter, max_tokens))
    return units


def chunk_document(doc: Document, counter: TokenCounter, config: ChunkingConfig) -> list[Chunk]:
    text = doc.text
    if doc.segments:
        units = _cue_units(doc, counter, config.max_tokens)
    else:
        units = _units(text, counter, config.max_tokens, config.boundary)
    # Drop whitespace-only units at the edges of chunks by trimming spans below.
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        total = 0
        j = i
        while j < len(units) and (total + units[j][2] <= config.max_tokens or j == i):
            total += units[j][2]
            j += 1
        start, end = units[i][0], units[j - 1][1]
        # Trim surrounding whitespace so the chunk text starts and ends on content.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            span = Span(start, end)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id_for(doc.doc_id, span),
                    doc_id=doc.doc_id,
                    text=text[start:end],
                    span=span,
                    ordinal=len(chunks),
                    n_tokens=total,
                    pages=doc.pages_for(span),
                    time=doc.time_for(span),
                )
            )
        if j >= len(units):
            break
        # Step back over trailing units to create the overlap, but always advance.
        back = j
        carried = 0
        while back - 1 > i and carried + units[back - 1][2] <= config.overlap_tokens:
            back -= 1
            carried += units[back][2]
        i = max(back, i + 1)
    return chunks
