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
A piece never costs less than one token per ``max_chars_per_token`` non-space
characters, whatever the tokenizer says (WordPiece reads a 200,000-character
word as one [UNK]), so no chunk outgrows the prompts that later quote it.

Units are streamed and packed through a small window, so chunking a 48 MB line
needs memory for the chunks, not for millions of units or one giant tokenization.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.textspan import SENTENCE_END
from pipeline.tokens import TokenCounter
from pipeline.types import Chunk, Document, Span

_LINE_END = re.compile(r"\n")
_WORDS = re.compile(r"\S+\s*")
_PARAGRAPH = re.compile(r"\n[ \t\f\v]*\n\s*")
_SPACE = re.compile(r"\s+")
_BATCH = 512  # pieces per tokenizer call

Unit = tuple[int, int, int]  # (start, end, cost in tokens)

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
    # A floor on a piece's cost: one token per this many non-space characters (see _Coster).
    max_chars_per_token: int = 8

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError(f"overlap_tokens must be in [0, max_tokens), got {self.overlap_tokens}")
        if self.boundary not in _LEVELS:
            raise ValueError(f"unknown chunk boundary '{self.boundary}'; use one of {', '.join(_LEVELS)}")
        if self.max_chars_per_token < 1:
            raise ValueError(f"max_chars_per_token must be at least 1, got {self.max_chars_per_token}")

    @classmethod
    def lara_baseline(cls) -> ChunkingConfig:
        """LaRA's RAG baseline: 600-token chunks with 100 tokens of overlap."""
        return cls(max_tokens=600, overlap_tokens=100, boundary="sentence")


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """Split text[start:end] after each match of pattern; keep separators with the left piece."""
    cur = start
    for m in pattern.finditer(text, start, end):
        if m.end() > cur:
            yield (cur, m.end())
            cur = m.end()
    if cur < end:
        yield (cur, end)


def _nonspace(text: str, start: int, end: int) -> int:
    """Characters of text[start:end] that are not white space, without copying the range."""
    return (end - start) - sum(m.end() - m.start() for m in _SPACE.finditer(text, start, end))


class _Coster:
    """A piece's cost: its tokens, but at least one per ``chars_per_token`` non-space characters.

    Tokenizers undercount some texts badly (WordPiece reads any word over 100 characters as
    one [UNK]), and the generator that reads the chunk later counts them in full; the floor
    keeps every chunk's length bounded whatever the counter says. A piece whose non-space
    characters alone exceed the budget is not tokenized at all (a 48 MB line is never handed
    to the tokenizer in one piece).
    """

    def __init__(self, text: str, counter: TokenCounter, max_tokens: int, chars_per_token: int) -> None:
        self.text = text
        self.counter = counter
        self.max_tokens = max_tokens
        self.cpt = chars_per_token
        self.limit = max_tokens * chars_per_token

    def costs(self, pieces: Sequence[tuple[int, int]]) -> list[int]:
        out = [0] * len(pieces)
        to_count: list[int] = []
        for k, (a, b) in enumerate(pieces):
            if b - a > 4 * self.limit:
                ns = _nonspace(self.text, a, b)
                if ns > self.limit:
                    out[k] = -(-ns // self.cpt)
                    continue
            to_count.append(k)
        counts = self.counter.count([self.text[pieces[k][0] : pieces[k][1]] for k in to_count])
        for k, n in zip(to_count, counts):
            a, b = pieces[k]
            if b - a > self.cpt * n:
                n = max(n, -(-_nonspace(self.text, a, b) // self.cpt))
            out[k] = n
        return out


def _batched(pieces: Iterator[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    batch: list[tuple[int, int]] = []
    for p in pieces:
        batch.append(p)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _iter_units(
    coster: _Coster,
    start: int,
    end: int,
    levels: tuple[re.Pattern[str], ...],
    known: int | None = None,
) -> Iterator[Unit]:
    """Units (start, end, cost) of text[start:end], in order, each within the budget where
    possible: pieces at the coarsest level, too-long pieces split at the next level, and
    words longer than the budget cut by characters. Streams: memory stays bounded."""
    text, max_tokens = coster.text, coster.max_tokens
    for batch in _batched(_split(text, start, end, levels[0]), _BATCH):
        # A piece that did not split at this level keeps the cost already known.
        costs = [known] if known is not None and batch == [(start, end)] else coster.costs(batch)
        for (a, b), n in zip(batch, costs):
            if n <= max_tokens or b - a <= 1:
                yield (a, b, n)
            elif len(levels) > 1:
                yield from _iter_units(coster, a, b, levels[1:], n)
            else:
                yield from _cut(coster, a, b, n)


def _cut(coster: _Coster, start: int, end: int, n: int) -> Iterator[Unit]:
    """A single word longer than the budget, cut by characters into pieces within it."""
    max_tokens = coster.max_tokens
    step = max(1, min(coster.limit, (end - start) * max_tokens // max(1, n)))
    s = start
    while s < end:
        e = min(end, s + step)
        m = coster.costs([(s, e)])[0]
        while m > max_tokens and e - s > 1:
            e = s + max(1, min(e - s - 1, (e - s) * max_tokens // m))
            m = coster.costs([(s, e)])[0]
        yield (s, e, m)
        s = e


def _merge_blank(text: str, units: Iterable[Unit]) -> Iterator[Unit]:
    """Fold white-space-only units into their neighbour (the previous one, or the next at the
    start), so every unit holds content: a chunk then never trims down to its neighbour's span."""
    held: Unit | None = None
    lead: Unit | None = None
    for a, b, n in units:
        if not text[a:b].strip():
            if held is not None:
                held = (held[0], b, held[2] + n)
            else:
                lead = (a, b, n) if lead is None else (lead[0], b, lead[2] + n)
            continue
        if held is not None:
            yield held
        if lead is not None:
            a, n, lead = lead[0], n + lead[2], None
        held = (a, b, n)
    if held is not None:
        yield held


def chunk_id_for(doc_id: str, span: Span) -> str:
    return hashlib.sha1(f"{doc_id}:{span.start}:{span.end}".encode()).hexdigest()[:16]


def _cue_units(doc: Document, coster: _Coster) -> Iterator[Unit]:
    """Transcript units are whole cues, so every chunk covers whole cues and their times.
    A single cue longer than the budget (rare) is cut into sentence/word units."""
    assert doc.segments is not None
    for batch in _batched(((s.span.start, s.span.end) for s in doc.segments), _BATCH):
        for (a, b), n in zip(batch, coster.costs(batch)):
            if n <= coster.max_tokens:
                yield (a, b, n)
            else:
                yield from _iter_units(coster, a, b, _LEVELS["sentence"], n)


class _Window:
    """Random access to the units of a stream, keeping only those not yet behind the packer."""

    def __init__(self, units: Iterator[Unit]) -> None:
        self._it = units
        self._buf: list[Unit] = []
        self._base = 0

    def get(self, k: int) -> Unit | None:
        while k - self._base >= len(self._buf):
            nxt = next(self._it, None)
            if nxt is None:
                return None
            self._buf.append(nxt)
        return self._buf[k - self._base]

    def drop_before(self, k: int) -> None:
        del self._buf[: k - self._base]
        self._base = k


def chunk_document(
    doc: Document,
    counter: TokenCounter,
    config: ChunkingConfig,
    on_progress: Callable[[int], None] | None = None,
) -> list[Chunk]:
    """Chunks of ``doc`` in order. Invariants (tested property-based in tests/test_chunking.py):
    each chunk's text is ``doc.text[span]``, trimmed, non-empty; starts and ends strictly
    increase (no span twice); neighbours overlap or only white space lies between them, so
    every non-space character is in a chunk; each chunk costs at most ``max_tokens`` (unless
    one character alone costs more) and holds at most ``max_tokens * max_chars_per_token``
    non-space characters. ``on_progress`` is told the characters done every 500 chunks."""
    text = doc.text
    coster = _Coster(text, counter, config.max_tokens, config.max_chars_per_token)
    if doc.segments:
        stream = _cue_units(doc, coster)
    else:
        stream = _iter_units(coster, 0, len(text), _LEVELS[config.boundary])
    units = _Window(_merge_blank(text, stream))
    chunks: list[Chunk] = []
    i = 0
    first = units.get(0)
    while first is not None:
        total = 0
        j = i
        unit = first
        while unit is not None and (total + unit[2] <= config.max_tokens or j == i):
            total += unit[2]
            j += 1
            unit = units.get(j)
        start, end = first[0], units.get(j - 1)[1]  # type: ignore[index]
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
        if unit is None:
            break
        if on_progress is not None and len(chunks) % 500 == 0:
            on_progress(end)
        # Step back over trailing units for the overlap, but leave room for unit j: the next
        # chunk must reach past this one's end (and it starts after this one's start).
        back = j
        carried = 0
        while back - 1 > i:
            n = units.get(back - 1)[2]  # type: ignore[index]
            if carried + n > config.overlap_tokens or carried + n + unit[2] > config.max_tokens:
                break
            back -= 1
            carried += n
        i = back
        units.drop_before(i)
        first = units.get(i)
    return chunks
