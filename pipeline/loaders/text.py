"""Plain text and markdown loader."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import IngestError
from pipeline.loaders.common import content_hash, doc_id_for
from pipeline.types import Document, MediaType

_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# At most this share of NUL characters is dropped (with a warning); more is binary data.
MAX_NUL_SHARE = 0.01


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when the NULs sit on one parity (ASCII-range text in
    UTF-16 without a byte order mark), else None."""
    if len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    nul_even, nul_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if nul_odd > 0.4 and nul_even < 0.05:
        return "utf-16-le"
    if nul_even > 0.4 and nul_odd < 0.05:
        return "utf-16-be"
    return None


def _decode_as(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = encoding.upper().replace("-LE", "").replace("-BE", "")
        raise IngestError(
            str(path),
            f"invalid {name} text (at byte {exc.start})",
            f"re-save the file as UTF-8, e.g. 'iconv -f {encoding} -t utf-8'",
        ) from exc


def decode_text(path: Path, data: bytes, notes: list[str] | None = None) -> str:
    """Decode UTF-8 (with or without BOM), UTF-16 (with a BOM, or without one when the text
    is mostly ASCII-range) or UTF-32 with a BOM; refuse binary data. A few stray NUL
    characters are removed, with a note appended to ``notes``; more are refused."""
    text: str | None = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _decode_as(path, data, encoding)
            break
    head = data[:8192]
    if text is None and b"\x00" in head:
        guess = _utf16_without_bom(head[: len(head) // 2 * 2])
        if guess is None:
            raise IngestError(
                str(path), "binary data in a text file (NUL bytes)", "check the file type or its suffix"
            )
        text = _decode_as(path, data, guess)
        if notes is not None:
            notes.append(f"decoded as {guess.upper()} (no byte order mark)")
    if text is None:
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
    nuls = text.count("\x00")
    if nuls:
        first = text.index("\x00")
        if nuls > MAX_NUL_SHARE * len(text):
            raise IngestError(
                str(path),
                f"binary data in a text file ({nuls:,} NUL characters, the first at character {first:,})",
                "check the file type, or remove the NULs, e.g. \"tr -d '\\000'\"",
            )
        text = text.replace("\x00", "")
        if notes is not None:
            notes.append(f"{nuls:,} NUL character(s) removed (the first at character {first:,})")
    return text


def load_text(path: Path, data: bytes, media_type: MediaType = "text") -> Document:
    notes: list[str] = []
    text = decode_text(path, data, notes).replace("\r\n", "\n").replace("\r", "\n")
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
        warnings=tuple(notes),
    )
