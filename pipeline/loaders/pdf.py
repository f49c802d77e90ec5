"""PDF loader (PyMuPDF): text per page, with each page's character range kept."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.loaders.limits import Deadline
from pipeline.types import Document, PageSpan, Span

PAGE_SEPARATOR = "\n\n"


def load_pdf(path: Path, data: bytes, max_pages: int = 20_000, deadline: Deadline | None = None) -> Document:
    import pymupdf

    try:
        pdf = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises several types for broken files
        raise IngestError(
            str(path), f"not a readable PDF ({type(exc).__name__})", "check that the file is not corrupt"
        ) from exc
    with pdf:
        if pdf.needs_pass:
            raise IngestError(
                str(path), "the PDF is encrypted", "remove the password protection and ingest it again"
            )
        if pdf.page_count > max_pages:
            raise IngestError(
                str(path),
                f"too many pages ({pdf.page_count:,} > {max_pages:,})",
                "split it, or raise LONGQA_INGEST__MAX_PAGES",
            )
        parts: list[str] = []
        pages: list[PageSpan] = []
        empty: list[int] = []
        offset = 0
        for number, page in enumerate(pdf, start=1):
            if deadline is not None:
                deadline.check(f"page {number} of {pdf.page_count:,}")
            try:
                page_text = page.get_text("text", sort=False)
            except Exception as exc:
                raise IngestError(
                    str(path), f"page {number} cannot be parsed ({exc})", "check that the file is not corrupt"
                ) from exc
            page_text = page_text.replace("\r\n", "\n").rstrip()
            if not page_text.strip():
                empty.append(number)
            if parts:
                parts.append(PAGE_SEPARATOR)
                offset += len(PAGE_SEPARATOR)
            parts.append(page_text)
            pages.append(PageSpan(page=number, span=Span(offset, offset + len(page_text))))
            offset += len(page_text)
        n_pages = len(pages)
        repaired = bool(pdf.is_repaired)
    text = "".join(parts)
    if n_pages == 0:
        raise IngestError(str(path), "the PDF has no pages", "check that the file is not corrupt")
    if not text.strip():
        raise IngestError(
            str(path),
            f"no text layer on any of its {n_pages} pages (scanned?)",
            "run OCR first, e.g. 'ocrmypdf in.pdf out.pdf'",
        )
    warnings: tuple[str, ...] = ()
    if repaired:
        warnings += ("the PDF was damaged and PyMuPDF repaired it; check that its text is complete",)
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        warnings += (f"{len(empty)} page(s) without a text layer (scanned?): {shown}",)
    digest = content_hash(data)
    return Document(
        doc_id=doc_id_for(digest),
        source_path=str(path),
        media_type="pdf",
        text=text,
        content_hash=digest,
        pages=tuple(pages),
        title=path.stem,
        warnings=warnings,
    )
