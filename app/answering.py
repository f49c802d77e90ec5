"""The two answer modes: RAG (retrieved chunks) and LC (whole documents in the window)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.citations import Source, cite, locate_quote, make_citation, strip_markers
from app.llm.base import Generation, Generator
from app.prompts import NOT_FOUND, is_refusal, lc_messages, rag_messages, source_label
from indexes.hybrid import Retrieved
from pipeline.types import Chunk, Citation, Document, Span


@dataclass(frozen=True)
class ModeResult:
    text: str
    citations: list[Citation]
    generation: Generation
    refused: bool


def location(doc: Document, span: Span) -> str:
    pages = doc.pages_for(span)
    if pages:
        return f"p. {pages[0]}" if pages[0] == pages[1] else f"pp. {pages[0]}-{pages[1]}"
    t = doc.time_for(span)
    if t:
        return f"{fmt_time(t[0])}-{fmt_time(t[1])}"
    return f"chars {span.start}-{span.end}"


def fmt_time(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def answer_rag(
    question: str,
    retrieved: Sequence[Retrieved],
    docs: dict[str, Document],
    gen: Generator,
    *,
    max_tokens: int,
    temperature: float = 0.0,
) -> ModeResult:
    # Order-preserving assembly: sources in document order (OP-RAG), numbered from 1.
    ordered = sorted(retrieved, key=lambda r: (r.chunk.doc_id, r.chunk.span.start))
    sources = [
        Source(number=i, doc=docs[r.chunk.doc_id], span=r.chunk.span, chunk=r.chunk)
        for i, r in enumerate(ordered, start=1)
    ]
    blocks = [(source_label(s.number, s.doc.title, location(s.doc, s.span)), s.text) for s in sources]
    gen_out = gen.generate(rag_messages(question, blocks), max_tokens=max_tokens, temperature=temperature)
    text = gen_out.text or NOT_FOUND
    refused = is_refusal(text)
    shown, cites = cite(text, sources, match_unmarked=not refused)
    return ModeResult(shown, cites, gen_out, refused)


_EVIDENCE = re.compile(r"\n?\s*\**evidence\**\s*:\s*(.*)$", re.IGNORECASE | re.DOTALL)


def answer_lc(
    question: str,
    docs: Sequence[Document],
    chunks: Sequence[Chunk],
    gen: Generator,
    *,
    max_tokens: int,
    temperature: float = 0.0,
) -> ModeResult:
    gen_out = gen.generate(
        lc_messages(question, [(d.title, d.text) for d in docs]),
        max_tokens=max_tokens,
        temperature=temperature,
    )
    raw = gen_out.text or NOT_FOUND
    m = _EVIDENCE.search(raw)
    # The LC prompt numbers no sources, so any [n] the model writes is meaningless.
    answer = strip_markers(raw[: m.start()] if m else raw).strip() or NOT_FOUND
    evidence = m.group(1).strip() if m else ""
    refused = is_refusal(answer)
    by_id = {d.doc_id: d for d in docs}
    sources = [Source(i, by_id[c.doc_id], c.span, c) for i, c in enumerate(chunks, start=1)]
    if refused:
        return ModeResult(answer, [], gen_out, refused)
    for d in docs:
        span = locate_quote(evidence, d) if evidence else None
        if span is None:
            continue
        # The model's quote is in the document: cite it, checked against its chunk.
        home = next(
            (s for s in sources if s.doc.doc_id == d.doc_id and s.span.start <= span.start < s.span.end), None
        )
        src = Source(1, d, home.span if home else span, home.chunk if home else None)
        cite_one = make_citation(1, answer, src, origin="quote", quote=span)
        return ModeResult(f"{answer} [1]", [cite_one], gen_out, refused)
    # No quote we can find: match the answer's claims to the document's chunks, renumbered 1..n.
    shown, found = cite(answer, sources, match_unmarked=True)
    renumber = {c.number: i for i, c in enumerate(found, start=1)}
    shown = re.sub(r"\[(\d+)\]", lambda mm: f"[{renumber.get(int(mm.group(1)), 0)}]", shown)
    return ModeResult(shown, [replace(c, number=renumber[c.number]) for c in found], gen_out, refused)
