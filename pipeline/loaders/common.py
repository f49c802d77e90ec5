"""Helpers shared by the loaders: safe reads and content hashing."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from pipeline.errors import IngestError


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def doc_id_for(digest: str) -> str:
    """Document ids are the first 16 hex digits of the file's sha256."""
    return digest[:16]


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, or an IngestError saying why not: missing, a symlink loop or a
    broken link, a directory, a pipe or device (never opened: reading one could block
    forever), empty, or over the size cap."""
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IngestError(
                str(path), "a symbolic link loop (the link points back to itself)", "fix or remove the link"
            ) from exc
        if path.is_symlink():
            raise IngestError(
                str(path), f"a broken symbolic link (to '{os.readlink(path)}')", "fix or remove the link"
            ) from exc
        if exc.errno == errno.ENOENT:
            raise IngestError(str(path), "no such file", "check the path") from exc
        raise IngestError(str(path), f"cannot open the file ({exc.strerror})", "check permissions") from exc
    if stat.S_ISDIR(st.st_mode):
        raise IngestError(str(path), "is a directory", "pass files, or a folder to 'longqa ingest'")
    if not stat.S_ISREG(st.st_mode):
        raise IngestError(
            str(path),
            f"not a regular file ({_kind(st.st_mode)})",
            "copy its content into a file and ingest that",
        )
    size = st.st_size
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
