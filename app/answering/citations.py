"""Citations: parse [n] markers, map them to document spans, extract quotes, verify.

Verification rule (docs/citations.md, ``app/answering/verify.py``): a citation is ``verified``
when the cited passage states what the claim adds to the question, with its names, numbers,
units, negation, direction and roles agreeing; each citation carries its verdict and reason.
The model's talk about sources ("as verified on page 99") is taken out of the claim and of the
text shown. The quote shown
is always text copied from the document at the cited span. Markers that name no
source are removed; a marker whose source does not support its claim is moved
to the source that does ("repaired"), or kept and shown as unverified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.answering.verify import META_WORDS, SOURCE_TALK, WHERE_WORDS, Check, check
from pipeline.textspan import numbers, sentence_spans, terms
from pipeline.types import Chunk, Citation, CitationOrigin, Document, Span

MIN_SUPPORT = 0.5
MIN_CLAIM_TERMS = 2
_MARKER = re.compile(r"\s*\[(\d+(?:\s*(?:,|;|-|–)\s*\d+)*)\]")
_LEADING_MARKERS = re.compile(f"(?:{_MARKER.pattern})+")
# Talk about where something is written ("as stated in the text on page 7489", "in paper 0") is not a claim
# about the document's content: it is left out of the words and numbers a source must support.
_WHERE = re.compile(
    r"\b(?:on|in|at)\s+(?:pages?|pp?\.)\s*\d+(?:\s*[-–]\s*\d+)?"
    r"|\b(?:in|from|according\s+to)\s+(?:the\s+)?(?:given\s+|provided\s+)?" + WHERE_WORDS + r"\b"
    # Which part of a collection ("in paper 0": LaRA joins papers and names them so); the cited
    # passage does not repeat its own name.
    r"|\b(?:in|from|according\s+to)\s+(?:the\s+)?(?:paper|part|section)\s+\d+\b",
    re.IGNORECASE,
)


def claim_of(sentence: str) -> str:
    """The claim a sentence makes: without citation markers and without talk of where it is written."""
    # The talk first: "where" alone would take "on page 99" out of "as verified on page 99" and
    # leave "as verified" in the claim.
    text = _WHERE.sub("", SOURCE_TALK.sub(" ", _MARKER.sub("", sentence)))
    return _capital_kept(sentence, _close_gaps(re.sub(r"\s{2,}", " ", text)).strip(" ,;:"))


def shown_sentence(sentence: str) -> str:
    """A sentence as shown: without the model's talk about sources ("as verified on page 99",
    "(verified)"), which the answer must not present as fact."""
    shown = _close_gaps(re.sub(r"[ \t]{2,}", " ", SOURCE_TALK.sub(" ", sentence))).strip(" ,;:")
    return _capital_kept(sentence, shown)


def _capital_kept(original: str, text: str) -> str:
    """A sentence whose opening words were taken out ("According to the third excerpt, the
    reactor ...") starts with a capital again."""
    first = original.lstrip()[:1]
    if text[:1].islower() and first.isupper() and not original.lstrip().startswith(text[:8]):
        return text[0].upper() + text[1:]
    return text


def _close_gaps(text: str) -> str:
    """Punctuation left stranded where words were taken out: no space before it, and a comma,
    semicolon or colon just before the sentence's end or a citation marker goes ("in 1964, ." ->
    "in 1964.", "was paid, [2]." -> "was paid [2].")."""
    text = re.sub(r"([,;:])\s*([.!?])", r"\2", re.sub(r"\s+([,.;:!?])", r"\1", text))
    return re.sub(r"[,;:]\s*(\[\d)", r" \1", text)


def shown_text(answer: str) -> str:
    """``shown_sentence`` for every sentence; sentences that only talk about sources are dropped."""
    keep = [shown_sentence(answer[a:b]) for a, b in sentence_spans(answer) if not is_meta(answer[a:b])]
    return " ".join(k for k in keep if k)


# What may end a finished sentence, after its markers and spaces: closing punctuation, also
# inside quotes or brackets, an ellipsis, or a list item's colon; a code block's fence.
_FINISHED = re.compile(r"(?:[.!?:;…]['\"”’)\]*]*|```)\Z")
_TRAILING_MARKERS = re.compile(rf"(?:{_MARKER.pattern}|\s)+\Z")


def unfinished_tail(answer: str) -> int | None:
    """Where an answer's last sentence starts when that sentence is unfinished (nothing closes it
    after its markers): the model stopped at its token limit mid-sentence ("... to bring the
    airplanes into"). None when the answer ends a sentence. Call it only for a generation that
    did stop at the limit: a model may end a finished answer without a full stop."""
    m = _TRAILING_MARKERS.search(answer)
    body = answer[: m.start()] if m else answer
    spans = sentence_spans(body)
    if not spans or _FINISHED.search(body):
        return None
    return max(spans[-1][0], body.rfind("\n") + 1)  # a list's last item, not the whole list


# Words that only point a reader elsewhere ("See [2] for more details."); meta in a sentence of
# nothing else, content words everywhere else.
_POINTING = frozenset(["details", "detail", "more", "further", "refer", "refers"])


def is_meta(sentence: str) -> bool:
    """A sentence that only talks about sources ("This is stated in the text on page 7489.")."""
    bare = _MARKER.sub("", sentence)
    if not [w for w in terms(bare) if not w.isdigit()]:
        return False
    rest = [w for w in terms(_WHERE.sub("", SOURCE_TALK.sub(" ", bare))) if not w.isdigit()]
    return all(w in META_WORDS or w in _POINTING for w in rest)


@dataclass(frozen=True)
class Source:
    """A numbered passage the answer may cite."""

    number: int
    doc: Document
    span: Span
    chunk: Chunk | None = None

    @property
    def text(self) -> str:
        return self.doc.text[self.span.start : self.span.end]


def _marker_numbers(body: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"\s*[,;]\s*", body):
        if re.search(r"[-–]", part):
            a, b = (int(x) for x in re.split(r"\s*[-–]\s*", part)[:2])
            out.extend(range(min(a, b), max(a, b) + 1) if abs(b - a) < 20 else [a, b])
        elif part.strip():
            out.append(int(part))
    return out


def support(claim: str, passage: str) -> float:
    """Share of the claim's content words found in the passage (0..1)."""
    want = set(terms(claim))
    if not want:
        return 0.0
    return len(want & set(terms(passage))) / len(want)


def supports(claim: str, passage: str, question: str = "") -> bool:
    """The passage states what the claim adds to the question (``verify.check``)."""
    return check(claim, passage, question).verified


def supports_lexical(claim: str, passage: str) -> bool:
    """The rule before issue 19 (half the claim's words and all its numbers in the passage);
    kept for benchmarks that compare the two."""
    return support(claim, passage) >= MIN_SUPPORT and numbers(claim) <= numbers(passage)


def best_quote(claim: str, doc: Document, span: Span, max_chars: int = 400) -> Span:
    """The sentence inside ``span`` that best supports ``claim`` (ties: the earliest)."""
    want = set(terms(claim))
    want_nums = numbers(claim)
    best, best_score = None, -1.0
    for a, b in sentence_spans(doc.text, span.start, span.end):
        sentence = doc.text[a:b]
        have = set(terms(sentence))
        if len(have) < 3 and best is not None:
            continue  # leaders, page numbers, stray punctuation
        score = len(want & have) + 0.5 * len(want_nums & numbers(sentence))
        if score > best_score:
            best, best_score = (a, b), score
    if best is None:
        return span
    a, b = best
    return Span(a, min(b, a + max_chars))


def make_citation(
    number: int,
    claim: str,
    src: Source,
    origin: CitationOrigin = "model",
    quote: Span | None = None,
    question: str = "",
) -> Citation:
    doc = src.doc
    quote_span = quote or best_quote(claim, doc, src.span)
    passage = src.text
    verdict: Check = check(claim, passage, question)
    return Citation(
        number=number,
        doc_id=doc.doc_id,
        source_path=doc.source_path,
        chunk_id=src.chunk.chunk_id if src.chunk else None,
        span=quote_span,
        pages=doc.pages_for(quote_span),
        time=doc.time_for(quote_span),
        quote=doc.text[quote_span.start : quote_span.end],
        verified=verdict.verified,
        support=round(verdict.support, 3),
        origin=origin,
        verdict=verdict.verdict,
        reason=verdict.reason,
        claim=claim,
    )


def _best_source(claim: str, sources: Sequence[Source], question: str = "") -> Source | None:
    """The source that states the claim best (verified; the highest support), if any does."""
    best, best_sup = None, -1.0
    for src in sources:
        got = check(claim, src.text, question)
        if got.verified and got.support > best_sup:
            best, best_sup = src, got.support
    return best


def cite(
    answer: str, sources: Sequence[Source], *, match_unmarked: bool = True, question: str = ""
) -> tuple[str, list[Citation]]:
    """Citations for an answer; returns the answer text to show and its citations.

    Each sentence's claim is the sentence without markers (a sentence with too few
    content words, such as "See [2].", takes the previous sentence's claim). Cited
    sources that do not support the claim are repaired where another source does.
    When the answer has no valid markers at all and ``match_unmarked`` is set, every
    claim is matched to the source that supports it best, if any does.
    """
    by_number = {s.number: s for s in sources}
    spans = _markers_apart(answer, sentence_spans(answer))
    any_marker = any(n in by_number for m in _MARKER.finditer(answer) for n in _marker_numbers(m.group(1)))
    claims: dict[int, list[str]] = {}
    origins: dict[int, CitationOrigin] = {}
    shown: list[str] = []
    prev_claim = ""
    cursor = 0
    for a, b in spans:
        sentence = answer[a:b]
        claim = claim_of(sentence)
        meta = is_meta(sentence)
        if prev_claim and meta:
            # "This is stated in [2].": the claim is the sentence before's; the talk adds nothing.
            claim = prev_claim
        elif len(terms(claim)) < MIN_CLAIM_TERMS:
            claim = f"{prev_claim} {claim}".strip()
        cited = [n for m in _MARKER.finditer(sentence) for n in _marker_numbers(m.group(1))]
        cited = [n for n in dict.fromkeys(cited) if n in by_number]
        final: list[int] = []
        for n in cited:
            origin: CitationOrigin = "model"
            if not supports(claim, by_number[n].text, question):
                better = _best_source(claim, sources, question)
                if better is not None:
                    n, origin = better.number, "repaired"
            if n not in final:
                final.append(n)
                origins.setdefault(n, origin)
        if not any_marker and match_unmarked and len(terms(claim)) >= MIN_CLAIM_TERMS:
            better = _best_source(claim, sources, question)
            if better is not None:
                final.append(better.number)
                origins.setdefault(better.number, "matched")
        for n in final:
            claims.setdefault(n, []).append(claim)
        text = shown_sentence(_MARKER.sub("", sentence).rstrip())
        if (meta or not text.strip(" .,;:!?")) and shown:
            # Only talk about sources, or only markers after the full stop ("... condition. [1]"):
            # not shown as a sentence of its own; its citations go with the sentence before.
            # What the sentence split left between the two (a closing quote: '... Necessity." [5]')
            # stays with the sentence before; a marker goes after it.
            prev = shown[-1] + answer[cursor:a].rstrip()
            shown[-1] = prev
            new = [n for n in final if f"[{n}]" not in prev]
            if new:
                end = len(prev.rstrip(".!?:;"))
                gap = "" if prev[:end].endswith("]") else " "
                shown[-1] = prev[:end] + gap + "".join(f"[{n}]" for n in new) + prev[end:]
            for n in final:
                claims.setdefault(n, []).append(claim)
            cursor = b
            continue
        if final:
            # Keep the sentence's closing punctuation after the markers.
            end = len(text.rstrip(".!?:;"))
            text = text[:end] + " " + "".join(f"[{n}]" for n in final) + text[end:]
        shown.append(answer[cursor:a] + text)
        cursor = b
        prev_claim = claim
    cites = [
        make_citation(n, " ".join(dict.fromkeys(claims[n])), by_number[n], origins[n], question=question)
        for n in sorted(claims)
    ]
    return "".join(shown).strip(), cites


def _markers_apart(answer: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Markers written after a sentence's full stop open the next span ("... 1964. [1] It
    combined ..."): on the same line, they belong to the sentence before, so they become a span
    of their own."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        m = _LEADING_MARKERS.match(answer, a, b)
        # On the same line only: "[1] The average …" opening a new line cites what follows it.
        if m and out and "\n" not in answer[out[-1][1] : answer.index("[", a)]:
            rest = m.end() + len(answer[m.end() : b]) - len(answer[m.end() : b].lstrip())
            if rest < b:
                out += [(a, m.end()), (rest, b)]
                continue
        out.append((a, b))
    return out


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text)


def _normalise(text: str) -> tuple[str, list[int]]:
    """Lower-case, collapse white space; return the text and a map to original offsets."""
    out: list[str] = []
    pos: list[int] = []
    prev_space = True
    for i, ch in enumerate(text):
        if ch.isspace():
            if not prev_space:
                out.append(" ")
                pos.append(i)
            prev_space = True
        else:
            out.append(ch.lower())
            pos.append(i)
            prev_space = False
    return "".join(out), pos


def locate_quote(quote: str, doc: Document, *, min_overlap: float = 0.6) -> Span | None:
    """Where ``quote`` occurs in the document; None if it does not.

    First an exact match ignoring case and white space. Failing that, the model may have
    changed a few words (punctuation, a dropped article, a typo) or the source may have lost
    its spaces: :func:`_fuzzy_locate` aligns letters and digits only. The returned span
    always points at document text, never at the model's words.
    """
    cleaned = quote.strip().strip("\"'\u201c\u201d")
    q, _ = _normalise(cleaned)
    if len(q) < 12:
        return None
    norm, pos = _normalise(doc.text)
    i = norm.find(q)
    if i >= 0:
        return Span(pos[i], pos[i + len(q) - 1] + 1)
    span = _fuzzy_locate(cleaned, doc.text, min_overlap)
    return _whole_sentences(doc.text, span) if span is not None else None


def _whole_sentences(text: str, span: Span, max_grow: int = 300) -> Span:
    """A fuzzy match widened to the sentences it touches (or at least to whole words), so the
    quote shown reads as the source's own sentence rather than a fragment."""
    lo, hi = max(0, span.start - max_grow), min(len(text), span.end + max_grow)
    touched = [(a, b) for a, b in sentence_spans(text, lo, hi) if a < span.end and span.start < b]
    if touched and (touched[0][0] > lo or lo == 0) and (touched[-1][1] < hi or hi == len(text)):
        return Span(touched[0][0], touched[-1][1])
    a, b = span.start, span.end
    while a > 0 and text[a - 1].isalnum():
        a -= 1
    while b < len(text) and text[b].isalnum():
        b += 1
    return Span(a, b)


def _alnum(text: str) -> tuple[str, list[int]]:
    """Lower-cased letters and digits only, with each one's offset in ``text``."""
    keep = [(i, ch.lower()) for i, ch in enumerate(text) if ch.isalnum()]
    return "".join(ch for _, ch in keep), [i for i, _ in keep]


def _fuzzy_locate(quote: str, text: str, min_overlap: float, gram: int = 8, step: int = 4) -> Span | None:
    """Align the quote's letters and digits to the document's by shared 8-character pieces.

    Every piece of the quote votes for where the quote would start in the document; the
    largest group of votes that agree within a few characters wins when it holds at least
    ``min_overlap`` of the pieces. Spaces and punctuation are ignored, so words the source
    ran together ("whichcontains") or the model re-punctuated still match.
    """
    qa, _ = _alnum(quote)
    if len(qa) < 3 * gram:
        return None
    da, dpos = _alnum(text)
    offsets = list(range(0, len(qa) - gram + 1, step))
    if offsets[-1] != len(qa) - gram:
        offsets.append(len(qa) - gram)  # the quote's last piece, so a match reaches its end
    found: list[tuple[int, int, int]] = []  # (diagonal, piece index, document position)
    for n, off in enumerate(offsets):
        piece = qa[off : off + gram]
        i = da.find(piece)
        seen = 0
        while i >= 0 and seen < 64:  # a piece repeated all over the document says little
            found.append((i - off, n, i))
            seen += 1
            i = da.find(piece, i + 1)
    if not found:
        return None
    found.sort()
    tolerance = max(12, len(qa) // 10)  # a few inserted or dropped words
    best: tuple[int, int, int] = (0, 0, 0)
    lo = 0
    for hi in range(len(found)):
        while found[hi][0] - found[lo][0] > tolerance:
            lo += 1
        pieces = len({f[1] for f in found[lo : hi + 1]})
        if pieces > best[0]:
            best = (pieces, lo, hi)
    pieces, lo, hi = best
    if pieces < min_overlap * len(offsets):
        return None
    group = found[lo : hi + 1]
    start = min(f[2] for f in group)
    end = max(f[2] for f in group) + gram - 1
    return Span(dpos[start], dpos[end] + 1)
