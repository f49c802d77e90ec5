"""Helpers shared by the loaders: safe reads and content hashing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.errors import IngestError


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def doc_id_for(digest: str) -> str:
    """Document ids are the first 16 hex digits of the file's sha256."""
    return digest[:16]


def read_bytes(path: Path, max_bytes: int) -> bytes:
    if not path.exists():
        raise IngestError(str(path), "no such file", "check the path")
    if path.is_dir():
        raise IngestError(str(path), "is a directory", "pass files, or a folder to 'longqa ingest'")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(str(path), "the file is empty", "remove it or add content")
    if size > max_bytes:
        raise IngestError(
            str(path),
            f"the file is too large ({size / 1e6:.0f} MB > {max_bytes / 1e6:.0f} MB)",
            "split it, or raise LONGQA_INGEST__MAX_FILE_MB",
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), f"cannot open the file ({exc.strerror})", "check permissions") from exc
