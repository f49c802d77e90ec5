"""Plain text and markdown loader."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.types import Document, MediaType


def decode_text(path: Path, data: bytes) -> str:
    """Decode UTF-8 (with or without BOM) or BOM-marked UTF-16; refuse binary data."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise IngestError(str(path), "invalid UTF-16 text", "re-save the file as UTF-8") from exc
    head = data[:8192]
    if b"\x00" in head:
        raise IngestError(
            str(path), "binary data in a text file (NUL bytes)", "check the file type or its suffix"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(
            str(path),
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "convert it, e.g. 'iconv -f latin1 -t utf-8'",
        ) from exc
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > max(8, len(text[:8192]) // 50):
        raise IngestError(str(path), "binary data in a text file", "check the file type or its suffix")
    return text


def load_text(path: Path, data: bytes, media_type: MediaType = "text") -> Document:
    text = decode_text(path, data).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise IngestError(str(path), "the file has no text (only whitespace)", "remove it or add content")
    digest = content_hash(data)
    return Document(
        doc_id=doc_id_for(digest),
        source_path=str(path),
        media_type=media_type,
        text=text,
        content_hash=digest,
        title=path.stem,
    )
