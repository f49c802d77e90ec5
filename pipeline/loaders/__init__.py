"""Loaders turn one file into one :class:`~pipeline.types.Document`.

``load_document`` dispatches on the file suffix with an explicit table; every
failure is an :class:`~pipeline.errors.IngestError` naming the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import read_bytes
from pipeline.loaders.docx import load_docx
from pipeline.loaders.html import load_html
from pipeline.loaders.limits import Deadline
from pipeline.loaders.media import MEDIA_SUFFIXES, ASRConfig, load_media
from pipeline.loaders.pdf import load_pdf
from pipeline.loaders.subtitles import load_subtitles
from pipeline.loaders.text import load_text
from pipeline.types import Document

TEXT_SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
SUPPORTED_SUFFIXES = tuple(
    sorted({*TEXT_SUFFIXES, ".pdf", ".html", ".htm", ".docx", ".srt", ".vtt", *MEDIA_SUFFIXES})
)


@dataclass(frozen=True)
class LoaderOptions:
    max_bytes: int = 200_000_000
    asr: ASRConfig | None = None
    max_chars: int = 50_000_000  # characters of text per document, after parsing
    max_pages: int = 20_000  # pages of a PDF
    max_media_minutes: float = 600.0  # length of an audio or video file
    max_seconds: float = 1800.0  # wall time to read one file (checked between pages, segments)


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_SUFFIXES


def load_document(path: str | Path, options: LoaderOptions | None = None) -> Document:
    """Load ``path`` into a Document, or raise IngestError with a one-line reason."""
    opts = options or LoaderOptions()
    p = Path(path)
    suffix = p.suffix.lower()
    if not is_supported(p):
        raise IngestError(
            str(p),
            f"unsupported file type '{suffix or '(no suffix)'}'",
            f"supported types are {', '.join(SUPPORTED_SUFFIXES)}",
        )
    data = read_bytes(p, opts.max_bytes)
    doc = _load(p, suffix, data, opts)
    if len(doc.text) > opts.max_chars:
        raise IngestError(
            str(p),
            f"too much text ({len(doc.text):,} characters > {opts.max_chars:,})",
            "split it, or raise LONGQA_INGEST__MAX_CHARS",
        )
    return doc


def _load(p: Path, suffix: str, data: bytes, opts: LoaderOptions) -> Document:
    if suffix == ".pdf":
        return load_pdf(p, data, opts.max_pages, Deadline(str(p), opts.max_seconds))
    if suffix in (".html", ".htm"):
        return load_html(p, data)
    if suffix == ".docx":
        return load_docx(p, data)
    if suffix in (".srt", ".vtt"):
        return load_subtitles(p, data)
    if suffix in MEDIA_SUFFIXES:
        return load_media(p, data, opts.asr, opts.max_media_minutes, Deadline(str(p), opts.max_seconds))
    return load_text(p, data, media_type=TEXT_SUFFIXES[suffix])  # type: ignore[arg-type]


__all__ = [
    "ASRConfig",
    "IngestError",
    "LoaderOptions",
    "SUPPORTED_SUFFIXES",
    "is_media",
    "is_supported",
    "load_document",
]
