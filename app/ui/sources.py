"""What the app shows for a citation: the PDF page with the cited words highlighted, the
passage with its context, the transcript cues with their times. No Streamlit here, so
it is testable and reusable; ``streamlit_app.py`` only lays these out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

from app.locations import fmt_time, location_text
from pipeline.errors import FileMissing
from pipeline.types import Citation, CitationOrigin, Document, Span

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".m4v")
AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".ogg", ".flac", ".aac", ".opus")
HIGHLIGHT_RGB = (1.0, 0.86, 0.0)

_MARKERS = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")

ORIGIN_TEXT: dict[CitationOrigin, str] = {
    "model": "cited by the model",
    "repaired": "the model cited another source; moved to the one that supports the claim",
    "matched": "the model gave no marker; matched to the source that supports the claim",
    "quote": "the model's evidence sentence, found in the document",
}


# -- answer text ------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def md_text(text: str) -> str:
    """``text`` for st.markdown as literal text: every markdown and Streamlit marker
    (links, images that would fetch a URL, ``:red[...]`` directives, ``$`` math, HTML) is
    escaped, so a document, a question, a file name or an answer shows as written."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def anchor_id(turn: int, number: int, prefix: str = "src") -> str:
    return f"{prefix}-{turn}-{number}"


def link_markers(text: str, turn: int, known: set[int], prefix: str = "src") -> str:
    """Markdown where every ``[n]`` naming a known citation links to its source panel; the
    rest of the text is literal (md_text): the model's own markdown is not rendered."""
    out: list[str] = []
    cur = 0
    for m in _MARKERS.finditer(text):
        nums = [int(x) for x in re.split(r"\s*[,;]\s*", m.group(1))]
        if not all(n in known for n in nums):
            continue
        out.append(md_text(text[cur : m.start()]))
        out.extend(f"[\\[{n}\\]](#{anchor_id(turn, n, prefix)})" for n in nums)
        cur = m.end()
    out.append(md_text(text[cur:]))
    return "".join(out)


def markers_in(text: str) -> list[int]:
    """Every source number the text cites with ``[n]`` (``[1, 2]`` too), in order, once each."""
    seen: list[int] = []
    for m in _MARKERS.finditer(text):
        for x in re.split(r"\s*[,;]\s*", m.group(1)):
            if int(x) not in seen:
                seen.append(int(x))
    return seen


@dataclass(frozen=True)
class Grounding:
    """How well an answer is backed by the user's documents, for the banner in the answer.

    ``kind``: "verified" (at least one citation checked against its passage), "not_found" (the
    model says the documents do not contain the answer), "unverified" (citations, none
    verified), "none" (no source at all). ``orphans``: markers in the text with no source."""

    kind: str
    verified: int
    total: int
    orphans: tuple[int, ...]

    @property
    def banner(self) -> str:
        if self.kind == "not_found":
            return "Not in your documents: the model found no answer to this in them."
        if self.kind == "none":
            return (
                "No verified source in your documents: nothing in them was found to support this "
                "answer. It may come from the model's general knowledge, or be wrong."
            )
        if self.kind == "unverified":
            return (
                f"No verified source in your documents: none of its {self.total} cited passage"
                f"{'s' if self.total != 1 else ''} was found to state it. Check the sources below "
                "before relying on it."
            )
        return ""


def grounding(text: str, citations: Sequence[Citation]) -> Grounding:
    from app.refusals import is_not_found_reply, is_pure_refusal

    verified = sum(c.verified for c in citations)
    known = {c.number for c in citations}
    orphans = tuple(n for n in markers_in(text) if n not in known)
    if verified:
        kind = "verified"
    elif is_not_found_reply(text) or is_pure_refusal(text):
        kind = "not_found"
    else:
        kind = "unverified" if citations else "none"
    return Grounding(kind, verified, len(citations), orphans)


# -- where a citation points ------------------------------------------------------------
def location_label(c: Citation) -> str:
    return location_text(c.pages, c.time, c.span, typeset=True)


def status_label(c: Citation) -> str:
    return "verified" if c.verified else "unverified"


def explain_status(c: Citation) -> str:
    how = ORIGIN_TEXT.get(c.origin, c.origin)
    if c.reason:  # the checker's own reason (app/answering/verify.py)
        if c.verified:
            return f"Verified: {c.reason} ({how})."
        what = c.verdict.replace("_", " ") if c.verdict else "unverified"
        return f"Unverified ({what}): {c.reason} ({how}). Read the passage before relying on this statement."
    share = f"{c.support:.0%} of the claim's words are in the cited passage"
    if c.verified:
        return f"Verified: {share}, with every number it states ({how})."
    return (
        f"Unverified: only {share}, or a number in the claim is missing there ({how}). "
        "Read the passage before relying on this statement."
    )


# -- text passages ----------------------------------------------------------------------
@dataclass(frozen=True)
class Passage:
    """``before + quote + after`` is a window of the document around the cited span."""

    before: str
    quote: str
    after: str
    cut_start: bool  # text was left out before ``before``
    cut_end: bool

    def to_html(self, reflow: bool = False) -> str:
        """HTML with the quote marked; ``reflow`` joins the hard line breaks of PDF text
        (a blank line still separates paragraphs)."""

        def esc(s: str) -> str:
            if reflow:
                paragraphs = re.split(r"[ \t]*\n[ \t]*\n\s*", s)
                s = "\n\n".join(re.sub(r"[ \t]*\n[ \t]*", " ", para) for para in paragraphs)
            return html.escape(s).replace("\n", "<br>")

        return (
            '<div style="line-height:1.55;font-size:0.95rem">'
            + ("… " if self.cut_start else "")
            + esc(self.before)
            + f'<mark style="background:#ffe066;padding:0 2px">{esc(self.quote)}</mark>'
            + esc(self.after)
            + (" …" if self.cut_end else "")
            + "</div>"
        )


def _snap_back(text: str, i: int) -> int:
    """Move ``i`` back to the start of a word (never past 40 characters)."""
    j = i
    while j > 0 and i - j < 40 and not text[j - 1].isspace():
        j -= 1
    return j if j > 0 and text[j - 1].isspace() else i


def _snap_forward(text: str, i: int) -> int:
    j = i
    while j < len(text) and j - i < 40 and not text[j].isspace():
        j += 1
    return j


def passage(text: str, span: Span, context: int = 320) -> Passage:
    """The cited span with up to ``context`` characters on each side, cut at word boundaries."""
    a, b = max(0, span.start), min(len(text), span.end)
    lo = 0 if a - context <= 0 else _snap_back(text, a - context)
    hi = len(text) if b + context >= len(text) else _snap_forward(text, b + context)
    return Passage(text[lo:a], text[a:b], text[b:hi], lo > 0, hi < len(text))


# -- transcripts ------------------------------------------------------------------------
@dataclass(frozen=True)
class CueLine:
    start: float
    end: float
    text: str
    cited: bool

    @property
    def label(self) -> str:
        return fmt_time(self.start)


def cue_lines(doc: Document, span: Span, around: int = 2) -> list[CueLine]:
    """The cues the span touches, with ``around`` cues before and after for context."""
    segs = list(doc.segments or ())
    hit = [i for i, s in enumerate(segs) if s.span.overlaps(span)]
    if not hit:
        return []
    lo, hi = max(0, hit[0] - around), min(len(segs), hit[-1] + around + 1)
    return [
        CueLine(s.start, s.end, doc.text[s.span.start : s.span.end].strip(), lo + k in hit)
        for k, s in enumerate(segs[lo:hi])
    ]


def cues_html(lines: list[CueLine]) -> str:
    rows = []
    for line in lines:
        body = html.escape(line.text).replace("\n", " ")
        if line.cited:
            body = f'<mark style="background:#ffe066;padding:0 2px">{body}</mark>'
        rows.append(f'<div><code style="color:#666">{fmt_time(line.start)}</code>&nbsp; {body}</div>')
    return '<div style="line-height:1.6">' + "".join(rows) + "</div>"


@dataclass(frozen=True)
class Media:
    path: Path
    kind: str  # "audio" | "video"


def find_media(source_path: str, attached: Sequence[Path] = ()) -> Media | None:
    """The audio or video file a transcript belongs to: one attached to it in the app
    (``attached``), the source itself, or a file with the same name and a media suffix next to
    it (``talk.srt`` -> ``talk.mp4``)."""
    src = Path(source_path)
    candidates = [*attached, src] + [src.with_suffix(s) for s in (*VIDEO_SUFFIXES, *AUDIO_SUFFIXES)]
    for p in candidates:
        suffix = p.suffix.lower()
        if suffix in (*VIDEO_SUFFIXES, *AUDIO_SUFFIXES) and p.is_file():
            return Media(p, "video" if suffix in VIDEO_SUFFIXES else "audio")
    return None


# -- PDF pages --------------------------------------------------------------------------
@dataclass(frozen=True)
class PageImage:
    """A rendered PDF page (PNG) and, when the cited words were found on it, a close-up."""

    page: int
    png: bytes
    closeup: bytes | None
    found: bool  # the cited words were located and highlighted
    n_pages: int


def _norm(word: str) -> str:
    return re.sub(r"\W", "", word.lower())


def _match_words(page_words: list[str], quote_words: list[str]) -> tuple[int, int] | None:
    """Index range [i, j) of the page words that best match the quote's words."""
    pw = [_norm(w) for w in page_words]
    qw = [w for w in (_norm(w) for w in quote_words) if w]
    if not qw:
        return None
    keep = [i for i, w in enumerate(pw) if w]
    flat = [pw[i] for i in keep]
    n = len(qw)
    for i in range(len(flat) - n + 1):  # the exact run, usually found
        if flat[i : i + n] == qw:
            return keep[i], keep[i + n - 1] + 1
    sm = SequenceMatcher(None, flat, qw, autojunk=False)
    blocks = [b for b in sm.get_matching_blocks() if b.size]
    if not blocks:
        return None
    best = max(blocks, key=lambda b: b.size)
    # Grow around the longest block with blocks that sit close to it on the page.
    lo, hi = best.a, best.a + best.size
    matched = best.size
    for b in sorted(blocks, key=lambda b: abs(b.a - best.a)):
        if b is best:
            continue
        if b.a + b.size >= lo - 8 and b.a <= hi + 8:
            lo, hi = min(lo, b.a), max(hi, b.a + b.size)
            matched += b.size
    if matched < max(2, min(n, 0.5 * n)):
        return None
    return keep[lo], keep[hi - 1] + 1


def _quote_rects(words: list, quote: str) -> list:  # type: ignore[type-arg]
    """One rectangle per line of the page's words that match ``quote`` (PyMuPDF word tuples)."""
    import pymupdf

    rng = _match_words([w[4] for w in words], quote.split())
    if rng is None:
        return []
    lines: dict[tuple[int, int], pymupdf.Rect] = {}
    for w in words[rng[0] : rng[1]]:
        key = (int(w[5]), int(w[6]))
        r = pymupdf.Rect(w[:4])
        lines[key] = lines[key] | r if key in lines else r
    return list(lines.values())


@dataclass(frozen=True)
class PageWindow:
    """A few pages of a PDF around one, as a small PDF of their own (what the viewer is sent,
    so a 500-page report does not travel to the browser), and the cited words' boxes on the page."""

    pdf: bytes
    first: int  # 1-based page number of the window's first page in the document
    last: int
    n_pages: int  # of the whole document
    boxes: tuple[tuple[int, float, float, float, float], ...]  # (page in the window, x, y, w, h) in points


def page_window(pdf_path: str | Path, page: int, quote: str, cited_page: int, radius: int = 2) -> PageWindow:
    """Pages ``page - radius`` to ``page + radius`` (1-based, clipped) as their own PDF, with the
    boxes of ``quote`` on ``cited_page`` when it is in the window."""
    import pymupdf

    path = Path(pdf_path)
    if not path.is_file():
        raise FileMissing(
            f"the PDF '{path}' is no longer there", "put it back or ingest it again to see its pages"
        )
    with pymupdf.open(path) as pdf:
        n = pdf.page_count
        page = min(max(page, 1), n)
        first, last = max(1, page - radius), min(n, page + radius)
        boxes: list[tuple[int, float, float, float, float]] = []
        if first <= cited_page <= last and quote.strip():
            for r in _quote_rects(pdf[cited_page - 1].get_text("words", sort=False), quote):
                boxes.append((cited_page - first + 1, r.x0, r.y0, r.width, r.height))
        out = pymupdf.open()
        out.insert_pdf(pdf, from_page=first - 1, to_page=last - 1)
        data = out.tobytes(garbage=3, deflate=True)
        out.close()
    return PageWindow(data, first, last, n, tuple(boxes))


def render_pdf_page(
    pdf_path: str | Path, page: int, quote: str, *, dpi: int = 110, closeup_margin: float = 70.0
) -> PageImage:
    """Render ``page`` (1-based) of the PDF with the words of ``quote`` highlighted.

    Raises FileNotFoundError (the file moved) or ValueError (no such page) with the fix.
    """
    import pymupdf

    path = Path(pdf_path)
    if not path.is_file():
        raise FileMissing(
            f"the PDF '{path}' is no longer there", "put it back or ingest it again to see its pages"
        )
    with pymupdf.open(path) as pdf:
        if not 1 <= page <= pdf.page_count:
            raise ValueError(f"'{path.name}' has {pdf.page_count} pages, not a page {page}")
        pg = pdf[page - 1]
        words = pg.get_text("words", sort=False)
        rects = _quote_rects(words, quote)
        for r in rects:
            annot = pg.add_highlight_annot(r)
            annot.set_colors(stroke=HIGHLIGHT_RGB)
            annot.update()
        matrix = pymupdf.Matrix(dpi / 72, dpi / 72)
        png = pg.get_pixmap(matrix=matrix, alpha=False).tobytes("png")
        closeup = None
        if rects:
            box = pymupdf.Rect(rects[0])
            for r in rects[1:]:
                box |= r
            # A strip as wide as the page's text, from a little above to a little below the quote.
            text_x0 = min(w[0] for w in words)
            text_x1 = max(w[2] for w in words)
            clip = pymupdf.Rect(
                max(pg.rect.x0, min(text_x0, box.x0) - 12),
                max(pg.rect.y0, box.y0 - closeup_margin),
                min(pg.rect.x1, max(text_x1, box.x1) + 12),
                min(pg.rect.y1, box.y1 + closeup_margin),
            )
            zoom = pymupdf.Matrix(1.6 * dpi / 72, 1.6 * dpi / 72)
            closeup = pg.get_pixmap(matrix=zoom, clip=clip, alpha=False).tobytes("png")
        return PageImage(page, png, closeup, bool(rects), pdf.page_count)
