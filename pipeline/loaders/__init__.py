"""Loaders turn one file into one :class:`~pipeline.types.Document`.

``load_document`` dispatches on the file suffix with an explicit table; every
failure is an :class:`~pipeline.errors.IngestError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import read_bytes
from pipeline.loaders.pdf import load_pdf
from pipeline.loaders.text import load_text
from pipeline.types import Document

TEXT_SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
PDF_SUFFIXES = {".pdf"}

SUPPORTED_SUFFIXES = tuple(sorted(set(TEXT_SUFFIXES) | PDF_SUFFIXES))


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def load_document(path: str | Path, max_bytes: int = 200_000_000) -> Document:
    """Load ``path`` into a Document, or raise IngestError with a one-line reason."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not is_supported(p):
        raise IngestError(
            str(p),
            f"unsupported file type '{suffix or '(no suffix)'}'",
            f"supported types are {', '.join(SUPPORTED_SUFFIXES)}",
        )
    data = read_bytes(p, max_bytes)
    if suffix in PDF_SUFFIXES:
        return load_pdf(p, data)
    return load_text(p, data, media_type=TEXT_SUFFIXES[suffix])  # type: ignore[arg-type]


__all__ = ["load_document", "is_supported", "SUPPORTED_SUFFIXES", "IngestError"]
