"""DOCX loader (python-docx): paragraphs and tables in document order, headings marked."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.types import Document


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
