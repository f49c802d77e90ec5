"""Errors raised by ingestion: each names the file, the reason, and the fix."""

from __future__ import annotations


class IngestError(Exception):
    """A single file could not be ingested.

    ``str(err)`` is a one-line message: ``cannot read 'x.pdf': <reason>; <fix>``.
    """

    def __init__(self, path: str, reason: str, fix: str = "") -> None:
        self.path = path
        self.reason = reason
        self.fix = fix
        msg = f"cannot read '{path}': {reason}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)
