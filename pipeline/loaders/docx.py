"""DOCX loader (python-docx): paragraphs and tables in document order, headings marked."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.types import Document

# Limits checked on the zip's directory before anything is inflated: a 322 KB DOCX that
# inflates to 125 MB of XML kept python-docx busy for minutes at 1.2 GB.
MAX_INFLATED_BYTES = 300_000_000  # all members together (images included)
MAX_XML_BYTES = 60_000_000  # the XML parts together (text, styles, ...): ~20,000 pages of text
MAX_RATIO = 100  # a member over 10 MB that inflates more than this is a zip bomb


def _check_inflated_size(path: Path, data: bytes) -> None:
    """Refuse a DOCX whose members would inflate beyond the limits, reading only the zip's
    directory (sizes as declared; python-docx reads each member in full anyway)."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IngestError(
            str(path), f"not a valid DOCX ({type(exc).__name__})", "check that the file is not corrupt"
        ) from exc
    total = sum(m.file_size for m in members)
    xml = sum(m.file_size for m in members if m.filename.endswith((".xml", ".rels")))
    bomb = [
        m for m in members if m.file_size > 10_000_000 and m.file_size > MAX_RATIO * max(1, m.compress_size)
    ]
    if bomb:
        m = bomb[0]
        raise IngestError(
            str(path),
            f"a zip bomb: '{m.filename}' inflates from {m.compress_size / 1e3:,.0f} KB "
            f"to {m.file_size / 1e6:,.0f} MB",
            "open and re-save it in a word processor if it is a real document",
        )
    if total > MAX_INFLATED_BYTES or xml > MAX_XML_BYTES:
        what, size, limit = (
            ("its XML", xml, MAX_XML_BYTES) if xml > MAX_XML_BYTES else ("it", total, MAX_INFLATED_BYTES)
        )
        raise IngestError(
            str(path),
            f"too large once unzipped ({what} inflates to {size / 1e6:,.1f} MB > {limit / 1e6:,.1f} MB)",
            "split the document, or save its text as .txt",
        )


def load_docx(path: Path, data: bytes) -> Document:
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise IngestError(str(path), "python-docx is not installed", "pip install python-docx") from exc
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise IngestError(
            str(path),
            "an encrypted or legacy (.doc) Word file",
            "remove the password, or save it as .docx",
        )
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise IngestError(
            str(path), "not a valid DOCX (not a zip package)", "check that the file is not corrupt"
        )
    _check_inflated_size(path, data)
    try:
        d = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for child in d.element.body.iterchildren():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "p":
                para = Paragraph(child, d)
                text = para.text.strip()
                if not text:
                    continue
                style = (para.style.name if para.style is not None else "") or ""
                if style.startswith("Heading") and style[7:].strip().isdigit():
                    text = "#" * min(6, int(style[7:])) + " " + text
                elif style == "Title":
                    text = "# " + text
                blocks.append(text)
            elif tag == "tbl":
                rows = []
                for row in Table(child, d).rows:
                    cells = [" ".join(c.text.split()) for c in row.cells]
                    rows.append(" | ".join(dict.fromkeys(cells)))  # merged cells repeat
                if rows:
                    blocks.append("\n".join(rows))
        title = (d.core_properties.title or "").strip()
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(
            str(path), f"not a readable DOCX ({type(exc).__name__})", "check that the file is not corrupt"
        ) from exc
    text = "\n\n".join(blocks)
    if not text.strip():
        raise IngestError(str(path), "the document has no text", "check its content")
    digest = content_hash(data)
    return Document(
        doc_id=doc_id_for(digest),
        source_path=str(path),
        media_type="docx",
        text=text,
        content_hash=digest,
        title=title or path.stem,
    )
