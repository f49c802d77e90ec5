"""The two answer modes: RAG (retrieved chunks) and LC (whole documents in the window).

LC mode on documents longer than the window (``overflow``):

- ``refuse``: raise, naming the fix;
- ``middle_cut``: LaRA's long-context baseline: keep the beginning and the end of the text,
  drop the middle, so the prompt fits;
- ``map_reduce``: Chain-of-Agents style: read the text in window-sized parts, in order, each
  step updating notes for the question (quotes copied from the part); then answer from the
  notes;
- ``auto``: the middle cut when it drops at most ``AUTO_CUT_MAX_DROP`` of the text, else
  map-reduce.

Both keep the stable layout (instructions and material first, question last), so a document,
a cut document or a part read once is a reusable KV prefix for the next question.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from app.answering.citations import (
    Source,
    cite,
    claim_of,
    locate_quote,
    make_citation,
    shown_text,
    strip_markers,
    unfinished_tail,
)
from app.answering.entail import entail_followup, entail_scored
from app.answering.prompts import (
    LC_SYSTEM,
    NOT_FOUND,
    READ_PART_SYSTEM,
    answer_from_notes_messages,
    lc_messages,
    rag_messages,
    read_part_messages,
    recheck_messages,
    source_label,
)
from app.answering.verify import verbatim
from app.llm.base import Generation, Generator, LLMError, Message
from app.locations import location_text
from app.refusals import is_not_found_reply
from indexes.hybrid import Retrieved
from pipeline.errors import PromptTooLong
from pipeline.textspan import sentence_spans
from pipeline.types import Chunk, Citation, Document, FirstDraft, Span

LCOverflow = Literal["refuse", "middle_cut", "map_reduce", "auto"]
AUTO_CUT_MAX_DROP = 0.25  # "auto" cuts the middle when that drops at most this share of tokens
PROMPT_OVERHEAD = 64  # chat template and labels around the material
QUESTION_ALLOWANCE = 200  # tokens kept for the question, whatever its length (see lc_capacity)
CUT_MARK = "\n\n[...]\n\n"


@dataclass(frozen=True)
class ModeResult:
    text: str
    citations: list[Citation]
    generation: Generation  # summed over every model call
    refused: bool
    strategy: str = ""  # "rag", "full", "middle_cut" or "map_reduce"
    note: str = ""  # what LC did with documents longer than the window, in words
    calls: int = 1
    first_draft: FirstDraft | None = None  # the answer before its re-check, if there was one
    cut_off: bool = False  # stopped at llm.max_tokens mid-sentence; that sentence was not checked


def prompt_location(doc: Document, span: Span) -> str:
    """The location a source label shows the model: pages or times; not character offsets, which
    mean nothing to it (a small model copies them into the answer as page numbers)."""
    return location_text(doc.pages_for(span), doc.time_for(span))


# -- RAG -----------------------------------------------------------------------------------
TextFn = Callable[[str], None]
RECHECK_NOTE = "a cited passage did not state the first answer, so the model checked it once more"


def _verified_share(result: ModeResult) -> float:
    return sum(c.verified for c in result.citations) / len(result.citations) if result.citations else 0.0


def _recheck(
    first: ModeResult,
    messages: Sequence[Message],
    mode: str,
    gen: Generator,
    max_tokens: int,
    temperature: float,
    on_text: TextFn | None,
    on_restart: TextFn | None,
    cite_again: Callable[[Generation], ModeResult],
) -> ModeResult:
    """One second look when a shown citation fails verification (docs/citations.md): the first
    answer and a request to check it against the material go back to the model, on the same
    prompt (its KV cache is reused). The new answer replaces the first when it says the material
    does not contain the answer or more of its citations are verified; either way both calls are
    counted and the first draft is kept on the result."""
    if first.refused or all(c.verified for c in first.citations):
        return first
    if on_restart is not None:
        on_restart(RECHECK_NOTE)
    again = _generate(
        gen, recheck_messages(messages, first.generation.text, mode), max_tokens, temperature, on_text
    )
    second = cite_again(again)
    take = second.refused or _verified_share(second) > _verified_share(first)
    chosen = second if take else first
    draft = FirstDraft(first.text, tuple(first.citations), kept=not take)
    note = "; ".join(x for x in (first.note, RECHECK_NOTE + ("" if take else " (first answer kept)")) if x)
    return replace(
        chosen,
        generation=_sum([first.generation, again]),
        calls=first.calls + 1,
        first_draft=draft,
        note=note,
    )


def cite_finished(out: Generation, cited: Callable[[Generation], ModeResult]) -> ModeResult:
    """``cited(out)`` for what the model finished: when it stopped at the token limit in the middle
    of a sentence, that sentence is shown after the cited answer, ending in "…", and is neither
    cited nor checked (a fragment such as "to bring the airplanes into" states nothing, yet its
    words are the source's); the result says it was cut off."""
    start = unfinished_tail(out.text) if out.finish_reason == "length" else None
    if start is None:
        return cited(out)
    tail = " ".join(strip_markers(out.text[start:]).split()) + " …"
    if not out.text[:start].strip():
        return ModeResult(tail, [], out, refused=False, cut_off=True)
    head = cited(replace(out, text=out.text[:start]))
    return replace(head, text=f"{head.text} {tail}", generation=out, cut_off=True)


def confirm(
    result: ModeResult,
    messages: Sequence[Message],
    gen: Generator,
    max_claims: int,
    mode: str,
    passages: Mapping[str, str] | None = None,
    question: str = "",
    threshold: float = 0.0,
) -> ModeResult:
    """The model's check of the verified citations (``app/answering/entail.py``), at most
    ``max_claims`` per answer: a citation whose claim the model does not confirm is marked
    unverified, with the model's reply as the reason. RAG (``passages``: chunk id -> its text):
    the cited passage and the claim in a prompt of their own, confirmed when the model's
    probability that the passage states it reaches ``threshold`` (0, or a backend without token
    probabilities: its one-word reply decides; docs/citations.md, "A scored check"); LC: on the
    answer's own cached prompt, so the document stays in the KV cache for the next question. A
    claim its quote states word for word is not asked about (``verify.verbatim``)."""
    if max_claims <= 0 or result.refused:
        return result
    gens: list[Generation] = []
    cites: list[Citation] = []
    for c in result.citations:
        if c.verified and len(gens) < max_claims and c.claim and not verbatim(c.claim, c.quote):
            quote = " ".join(c.quote.split())[:300]
            where = f"source [{c.number}]" if mode == "rag" else f"the document's sentence “{quote}”"
            passage = (passages or {}).get(c.chunk_id or "")
            p: float | None = None
            if passage is not None:
                label, p, out = entail_scored(gen, passage, c.claim, question, threshold)
            else:
                label, out = entail_followup(gen, messages, result.generation.text, where, c.claim)
            gens.append(out)
            odds = ""
            if p is not None:
                odds = f" (probability {p:.2f}, {'at least' if p >= threshold else 'under'} {threshold:.2f})"
            if label == "supported":
                c = replace(
                    c,
                    model_check=label,
                    reason=f"{c.reason}; the model, asked, confirmed that {where} states it{odds}",
                )
            else:
                said = label.replace("_", " ")
                c = replace(
                    c,
                    verified=False,
                    verdict=label,
                    model_check=label,
                    reason=f"asked whether {where} states the claim, the model replied: {said}{odds}",
                )
        cites.append(c)
    if not gens:
        return result
    total = replace(_sum([result.generation, *gens]), text=result.generation.text)
    return replace(result, citations=cites, generation=total, calls=result.calls + len(gens))


def _generate(
    gen: Generator, messages: Sequence[Message], max_tokens: int, temperature: float, on_text: TextFn | None
) -> Generation:
    """``gen.generate``, streaming the answer's pieces to ``on_text`` when one is given."""
    if on_text is None:
        return gen.generate(messages, max_tokens=max_tokens, temperature=temperature)
    return gen.generate(messages, max_tokens=max_tokens, temperature=temperature, on_text=on_text)


def answer_rag(
    question: str,
    retrieved: Sequence[Retrieved],
    docs: dict[str, Document],
    gen: Generator,
    *,
    max_tokens: int,
    temperature: float = 0.0,
    on_text: TextFn | None = None,
    recheck: bool = False,
    on_restart: TextFn | None = None,
    entail_claims: int = 0,
    entail_threshold: float = 0.0,
) -> ModeResult:
    # Order-preserving assembly: sources in document order (OP-RAG), numbered from 1.
    ordered = sorted(retrieved, key=lambda r: (r.chunk.doc_id, r.chunk.span.start))
    sources = [
        Source(number=i, doc=docs[r.chunk.doc_id], span=r.chunk.span, chunk=r.chunk)
        for i, r in enumerate(ordered, start=1)
    ]
    blocks = [(source_label(s.number, s.doc.title, prompt_location(s.doc, s.span)), s.text) for s in sources]
    messages = rag_messages(question, blocks)

    def cite_all(out: Generation) -> ModeResult:
        text = out.text or NOT_FOUND
        refused = is_not_found_reply(text)
        shown, cites = cite(text, sources, match_unmarked=not refused, question=question)
        return ModeResult(shown, cites, out, refused)

    def cited(out: Generation) -> ModeResult:
        return replace(cite_finished(out, cite_all), strategy="rag")

    result = cited(_generate(gen, messages, max_tokens, temperature, on_text))
    if recheck:
        result = _recheck(result, messages, "rag", gen, max_tokens, temperature, on_text, on_restart, cited)
    passages = {s.chunk.chunk_id: s.text for s in sources if s.chunk is not None}
    return confirm(result, messages, gen, entail_claims, "rag", passages, question, entail_threshold)


# -- fitting long documents ----------------------------------------------------------------
def _fit_chars(text: str, budget: int, gen: Generator, *, from_end: bool = False) -> int:
    """Most leading (or, ``from_end``, trailing) characters of ``text`` within ``budget`` tokens,
    cut at white space."""
    n = gen.count_tokens(text)
    if n <= budget:
        return len(text)
    keep = int(len(text) * budget / max(n, 1))
    while keep > 0:
        if from_end:
            cut = text.find(" ", len(text) - keep)
            cut = len(text) - cut if 0 <= cut < len(text) - keep * 0.9 else keep
            piece = text[len(text) - cut :]
        else:
            cut = text.rfind(" ", 0, keep)
            cut = cut if cut > keep * 0.9 else keep
            piece = text[:cut]
        if gen.count_tokens(piece) <= budget:
            return cut
        keep = int(keep * 0.98)
    return 0


def middle_cut(doc: Document, budget: int, gen: Generator) -> tuple[str, list[Span]]:
    """LaRA's cut: the beginning and the end of the text within ``budget`` tokens.

    Returns the text to show the model (head, a cut mark, tail) and the spans kept."""
    text = doc.text
    if gen.count_tokens(text) <= budget:
        return text, [Span(0, len(text))]
    half = max(1, (budget - gen.count_tokens(CUT_MARK)) // 2)
    head = _fit_chars(text, half, gen)
    tail_start = max(head, len(text) - _fit_chars(text, half, gen, from_end=True))
    return text[:head] + CUT_MARK + text[tail_start:], [Span(0, head), Span(tail_start, len(text))]


def split_parts(doc: Document, budget: int, gen: Generator) -> list[Span]:
    """The document cut into consecutive parts of at most ``budget`` tokens, at paragraph or
    sentence ends where possible."""
    text = doc.text
    parts: list[Span] = []
    start = 0
    while start < len(text):
        rest = text[start:]
        n = _fit_chars(rest, budget, gen)
        if n >= len(rest):
            parts.append(Span(start, len(text)))
            break
        cut = max(rest.rfind("\n\n", 0, n), rest.rfind(". ", 0, n) + 1)
        n = cut if cut > n * 0.7 else max(n, 1)
        parts.append(Span(start, start + n))
        start += n
    return parts


def lc_capacity(gen: Generator, question: str, max_tokens: int, n_docs: int = 1) -> int:
    """Tokens of document text that fit an LC prompt. Questions up to QUESTION_ALLOWANCE tokens
    get the same capacity, so a cut or split document is the same reusable prefix for each."""
    question_tokens = max(QUESTION_ALLOWANCE, gen.count_tokens(question))
    overhead = gen.count_tokens(LC_SYSTEM) + question_tokens + PROMPT_OVERHEAD + 32 * n_docs
    return gen.context_window - max_tokens - overhead


def lc_plan(doc_tokens: int, capacity: int, overflow: LCOverflow) -> str:
    """Which LC strategy reads ``doc_tokens`` through a ``capacity``-token budget."""
    if doc_tokens <= capacity:
        return "full"
    if overflow == "refuse":
        raise PromptTooLong(
            f"the documents have {doc_tokens:,} tokens, more than the {capacity:,} that fit the window",
            "use RAG mode, or set llm.lc_overflow to middle_cut, map_reduce or auto",
        )
    if overflow == "auto":
        return "middle_cut" if 1 - capacity / doc_tokens <= AUTO_CUT_MAX_DROP else "map_reduce"
    return overflow


# -- LC ------------------------------------------------------------------------------------
def answer_lc(
    question: str,
    docs: Sequence[Document],
    chunks: Sequence[Chunk],
    gen: Generator,
    *,
    max_tokens: int,
    temperature: float = 0.0,
    overflow: LCOverflow = "refuse",
    notes_tokens: int = 256,
    on_text: TextFn | None = None,
    recheck: bool = False,
    on_restart: TextFn | None = None,
    entail_claims: int = 0,
) -> ModeResult:
    capacity = lc_capacity(gen, question, max_tokens, len(docs))
    if capacity < 256:
        raise PromptTooLong(
            f"{gen.name}: a {gen.context_window:,}-token window leaves {capacity} tokens for the document "
            f"after the instructions, the question and {max_tokens} answer tokens",
            "lower llm.max_tokens, use RAG mode or a model with a larger window",
        )
    counts = [gen.count_tokens(d.text) for d in docs]
    plan = lc_plan(sum(counts), capacity, overflow)
    if plan == "map_reduce":
        return _map_reduce(question, docs, chunks, gen, max_tokens, temperature, notes_tokens, on_text)
    note = ""
    material = [(d.title, d.text) for d in docs]
    read: dict[str, list[Span]] = {}
    if plan == "middle_cut":
        total = sum(counts)
        material, kept = [], 0
        for d, n in zip(docs, counts):
            text, spans = middle_cut(d, capacity * n // total, gen)
            material.append((d.title, text))
            read[d.doc_id] = spans
            kept += sum(len(s) for s in spans)
        share = kept / max(1, sum(len(d.text) for d in docs))
        note = (
            "the documents are longer than the window: LC read their beginning and end "
            f"({share:.0%} of the text)"
        )
    messages = lc_messages(question, material)

    def cite_all(out: Generation) -> ModeResult:
        return _cite_lc(out.text, [], docs, chunks, out, read, question=question)

    def cited(out: Generation) -> ModeResult:
        return replace(_lc_finished(out, cite_all), strategy=plan, note=note)

    result = cited(_generate(gen, messages, max_tokens, temperature, on_text))
    if recheck:
        result = _recheck(result, messages, "lc", gen, max_tokens, temperature, on_text, on_restart, cited)
    return confirm(result, messages, gen, entail_claims, "lc")


def _sum(gens: Sequence[Generation]) -> Generation:
    return Generation(
        text=gens[-1].text,
        prompt_tokens=sum(g.prompt_tokens for g in gens),
        completion_tokens=sum(g.completion_tokens for g in gens),
        seconds=sum(g.seconds for g in gens),
        cached_tokens=sum(g.cached_tokens for g in gens),
        finish_reason=gens[-1].finish_reason,
        # The answer's first token comes after every earlier call (reading the parts).
        first_token_s=sum(g.seconds for g in gens[:-1]) + gens[-1].first_token_s,
    )


def _map_reduce(
    question: str,
    docs: Sequence[Document],
    chunks: Sequence[Chunk],
    gen: Generator,
    max_tokens: int,
    temperature: float,
    notes_tokens: int,
    on_text: TextFn | None = None,
) -> ModeResult:
    question_tokens = max(QUESTION_ALLOWANCE, gen.count_tokens(question))
    overhead = gen.count_tokens(READ_PART_SYSTEM) + question_tokens + 2 * notes_tokens + PROMPT_OVERHEAD
    budget = gen.context_window - overhead
    if budget < 256:
        raise LLMError(
            f"{gen.name}: a {gen.context_window:,}-token window leaves no room to read parts of the "
            "document; use RAG mode or a model with a larger window"
        )
    gens: list[Generation] = []
    notes = ""
    total = 0
    for d in docs:
        parts = split_parts(d, budget, gen)
        total += len(parts)
        for i, span in enumerate(parts, start=1):
            msgs = read_part_messages(question, d.title, d.text[span.start : span.end], i, len(parts), notes)
            out = gen.generate(msgs, max_tokens=notes_tokens, temperature=temperature)
            gens.append(out)
            if out.text.strip():
                notes = out.text.strip()
    title = docs[0].title if len(docs) == 1 else f"{len(docs)} documents"
    final_msgs = answer_from_notes_messages(question, title, notes)
    final = _generate(gen, final_msgs, max_tokens, temperature, on_text)
    gens.append(final)
    quotes = [a or b for a, b in _QUOTED.findall(notes)]
    result = _lc_finished(
        _sum(gens), lambda out: _cite_lc(out.text, quotes, docs, chunks, out, question=question)
    )
    note = f"the documents are longer than the window: LC read them in {total} parts and answered from notes"
    return replace(result, strategy="map_reduce", note=note, calls=len(gens))


_QUOTED = re.compile(r"\"([^\"]{20,})\"|\u201c([^\u201d]{20,})\u201d")
_EVIDENCE = re.compile(r"\n?\s*\**evidence\**\s*:\s*(.*)$", re.IGNORECASE | re.DOTALL)


def _tidy(answer: str) -> str:
    """The answer without a dangling lead-in to the evidence ("..., then '")."""
    answer = answer.strip()
    answer = re.sub(r"[\s,;:'\"\u201c\u201d(]*(?:\b(?:then|and)\b[\s'\"\u201c\u201d]*)?$", "", answer)
    return answer.strip()


def _lc_finished(out: Generation, cite_all: Callable[[Generation], ModeResult]) -> ModeResult:
    """``cite_finished`` for an LC answer: an evidence line, even a cut one, follows a finished
    answer, so only an answer without one can end mid-sentence."""
    return cite_all(out) if _EVIDENCE.search(out.text) else cite_finished(out, cite_all)


def _cite_lc(
    raw: str,
    more_quotes: Sequence[str],
    docs: Sequence[Document],
    chunks: Sequence[Chunk],
    gen_out: Generation,
    read: dict[str, list[Span]] | None = None,
    question: str = "",
) -> ModeResult:
    """The answer text and its citation: the model's evidence quote located in the documents
    (or, failing that, a quote from the notes), else the answer's claims matched to the
    passages the model read (``read``: spans per document; default: all of it).

    Each citation is checked against a passage of a few sentences around its quote, not a
    whole chunk, so ``verified`` means the text next to the quote carries the claim's words."""
    raw = raw or NOT_FOUND
    m = _EVIDENCE.search(raw)
    # The LC prompt numbers no sources, so any [n] the model writes is meaningless.
    answer = _tidy(shown_text(strip_markers(raw[: m.start()] if m else raw))) or NOT_FOUND
    evidence = m.group(1).strip().strip("\"'\u201c\u201d ") if m else ""
    refused = is_not_found_reply(answer)
    if refused:
        return ModeResult(answer, [], gen_out, refused)
    homes = {
        d.doc_id: sorted((c for c in chunks if c.doc_id == d.doc_id), key=lambda c: c.span.start)
        for d in docs
    }
    located: Citation | None = None
    for quote in [q for q in [evidence, *more_quotes] if q]:
        for d in docs:
            span = locate_quote(quote, d)
            if span is None:
                continue
            # The model's quote is in the document: cite it, checked against the sentences around it.
            around = _around(d.text, span)
            src = Source(1, d, around, _home(homes[d.doc_id], span.start))
            cite_one = make_citation(1, claim_of(answer), src, origin="quote", quote=span, question=question)
            if cite_one.verified:
                return ModeResult(f"{answer} [1]", [cite_one], gen_out, refused)
            located = located or cite_one
    # No quote that carries the claim: match the answer's claims to windows of sentences the
    # model read; a match replaces a real but unsupporting quote ("repaired"), as in RAG.
    sources: list[Source] = []
    for d in docs:
        for a, b in _windows(d.text, (read or {}).get(d.doc_id) or [Span(0, len(d.text))]):
            sources.append(Source(len(sources) + 1, d, Span(a, b), _home(homes[d.doc_id], a)))
    shown, found = cite(answer, sources, match_unmarked=True, question=question)
    if not found and located is not None:
        # Shown as the model gave it, marked unverified: the reader sees the claim is not carried.
        return ModeResult(f"{answer} [1]", [located], gen_out, refused)
    renumber = {c.number: i for i, c in enumerate(found, start=1)}
    shown = re.sub(r"\[(\d+)\]", lambda mm: f"[{renumber.get(int(mm.group(1)), 0)}]", shown)
    cites = [
        replace(c, number=renumber[c.number], origin="repaired" if located is not None else c.origin)
        for c in found
    ]
    return ModeResult(shown, cites, gen_out, refused)


def _home(chunks: Sequence[Chunk], pos: int) -> Chunk | None:
    """The chunk (of one document, sorted by start) that holds character ``pos``."""
    starts = [c.span.start for c in chunks]
    i = bisect.bisect_right(starts, pos) - 1
    return chunks[i] if i >= 0 and chunks[i].span.start <= pos < chunks[i].span.end else None


def _around(text: str, span: Span, extra: int = 1, reach: int = 1500) -> Span:
    """The sentences touching ``span`` plus ``extra`` sentences on each side."""
    lo, hi = max(0, span.start - reach), min(len(text), span.end + reach)
    sents = sentence_spans(text, lo, hi)
    idx = [i for i, (a, b) in enumerate(sents) if a < span.end and span.start < b]
    if not idx:
        return span
    first, last = max(0, idx[0] - extra), min(len(sents) - 1, idx[-1] + extra)
    return Span(min(sents[first][0], span.start), max(sents[last][1], span.end))


def _windows(text: str, spans: Sequence[Span], width: int = 2) -> list[tuple[int, int]]:
    """Overlapping windows of ``width`` consecutive sentences inside ``spans``."""
    out: list[tuple[int, int]] = []
    for sp in spans:
        sents = sentence_spans(text, sp.start, sp.end)
        for i in range(max(1, len(sents) - width + 1)):
            group = sents[i : i + width]
            out.append((group[0][0], group[-1][1]))
    return out


def lc_prefix_messages(docs: Sequence[Document]) -> list[Message]:
    """The LC prompt up to its reusable prefix (any question): for ``cached_prefix_tokens``
    and for reading a document ahead of its questions."""
    return lc_messages("", [(d.title, d.text) for d in docs])
