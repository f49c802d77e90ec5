"""Turn any exception into a message a user can act on: what went wrong and the fix.

The app shows these instead of stack traces; the trace goes to the server log.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from app.catalog import ModelUnavailable
from app.llm.base import LLMError
from app.settings import Settings
from pipeline.errors import IngestError

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


def explain(exc: BaseException, settings: Settings | None = None) -> Problem:
    """A one-paragraph explanation of ``exc`` with the fix; unexpected errors are logged."""
    llm = settings.llm if settings else None
    if isinstance(exc, LLMError):
        if llm is not None and llm.backend == "openai":
            fix = (
                f"Check that the server at {llm.base_url} is running and serves the model '{llm.model}', "
                "or switch the backend to the embedded llama.cpp in the sidebar."
            )
        else:
            fix = "Try a smaller model in the sidebar, or a shorter question scope."
        return Problem(_sentence(str(exc)), fix)
    if isinstance(exc, ModelUnavailable):
        return Problem(_sentence(str(exc)), "Pick an installed model in the sidebar (see 'longqa models').")
    if isinstance(exc, IngestError):
        return Problem(
            _sentence(exc.reason and f"cannot read '{exc.path}': {exc.reason}"), _sentence(exc.fix)
        )
    if isinstance(exc, LookupError) and "nothing is ingested" in str(exc):
        return Problem(
            "Nothing is in the library yet",
            "Add documents on the Library tab, or load the bundled samples there.",
        )
    if isinstance(exc, FileNotFoundError):
        return Problem(_sentence(str(exc)), "Check the path; it is read on the server, not on your computer.")
    if isinstance(exc, PermissionError):
        return Problem(_sentence(str(exc)), "Give the server process read access, or choose another path.")
    if type(exc).__name__ == "ValidationError":  # pydantic: a setting out of range
        errors: list[dict] = getattr(exc, "errors", lambda: [])()
        parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors[:3]]
        return Problem(
            "A setting is not valid (" + "; ".join(parts) + ")", "Correct the value in the sidebar."
        )
    if isinstance(exc, ValueError):
        text = str(exc).replace("--mode rag or auto", "RAG or Auto mode")
        return Problem(_sentence(text), "")
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
