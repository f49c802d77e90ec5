"""Turn any exception into a message a user can act on: what went wrong and the fix.

The app shows these instead of stack traces; the trace goes to the server log.
"""

from __future__ import annotations

import errno
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.llm.base import LLMError
from app.settings import Settings, settings_error
from pipeline.errors import LongqaError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.message}. {self.fix}" if self.fix else self.message


def _sentence(text: str) -> str:
    text = str(text).strip().strip("'\"").rstrip(".")
    return text[:1].upper() + text[1:] if text else "Something went wrong"


def _fix(text: str) -> str:
    """A fix as a sentence: capitalised, with its full stop."""
    return f"{_sentence(text)}." if text.strip() else ""


def explain(exc: BaseException, settings: Settings | None = None) -> Problem:
    """A one-paragraph explanation of ``exc`` with the fix; unexpected errors are logged.

    Typed errors (``pipeline.errors.LongqaError``) carry their own reason and fix: shown as they
    are, the fix in the app's words (``app_fix``). Builtin errors get a fix by their type."""
    if isinstance(exc, ValidationError):  # pydantic: a setting out of range
        exc = settings_error(exc)
    if isinstance(exc, LLMError) and not exc.fix:  # the backend failed and did not say what to do
        llm = settings.llm if settings else None
        if llm is not None and llm.backend == "openai":
            fix = (
                f"Check that the server at {llm.base_url} is running and serves the model '{llm.model}', "
                "or switch the backend to the embedded llama.cpp in the sidebar."
            )
        else:
            fix = "Try a smaller model in the sidebar, or a shorter question scope."
        return Problem(_sentence(exc.headline), fix)
    if isinstance(exc, LongqaError):
        return Problem(_sentence(exc.headline), _fix(exc.app_fix))
    if isinstance(exc, FileNotFoundError):
        return Problem(_sentence(str(exc)), "Check the path; it is read on the server, not on your computer.")
    if isinstance(exc, PermissionError):
        return Problem(_sentence(str(exc)), "Give the server process read access, or choose another path.")
    if isinstance(exc, ValueError):
        return Problem(_sentence(str(exc)), "")
    if isinstance(exc, MemoryError):
        return Problem(
            "The server ran out of memory",
            "Ask over fewer documents, use RAG mode, or pick a smaller model in the sidebar.",
        )
    if isinstance(exc, OSError):
        fixes = {
            errno.ENAMETOOLONG: "Rename the file to a shorter name.",
            errno.ENOSPC: "Free some disk space on the server.",
            errno.EACCES: "Check the file's permissions.",
            errno.EPERM: "Check the file's permissions.",
            errno.ELOOP: "Fix or remove the symbolic link.",
            errno.ENOENT: "Check the path.",
        }
        return Problem(
            _sentence(f"the server could not read or write a file ({exc})"),
            fixes.get(exc.errno or 0, "Check disk space and permissions."),
        )
    log.error("unexpected error in the app", exc_info=exc)
    return Problem(
        f"Unexpected error: {type(exc).__name__}: {_sentence(str(exc))}",
        "The details are in the server log; please report them.",
    )


_EXC_NAME = re.compile(r"\s*\((?:[A-Za-z_.]*?)(?:Error|Exception|Warning)\)")


def plain_failure(path: str, why: str) -> str:
    """An ingest failure for a person using the app: the file by its name (not the server's
    path to it) and no internal exception names ("not a readable PDF (FileDataError)")."""
    p = Path(path)
    text = why.replace(str(p), p.name)
    if str(p.parent) not in ("", "."):
        text = text.replace(str(p.parent) + "/", "")
    return _EXC_NAME.sub("", text).strip()
