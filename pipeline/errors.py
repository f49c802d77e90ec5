"""Errors a user can act on: each carries what went wrong (``reason``) and what to do (``fix``).

Front doors show them without matching their text: the CLI prints ``str(err)``, one line
``<reason>; <fix>``; the app shows ``err.headline`` and ``err.app_fix`` (the same fix in the
app's words where they differ, e.g. "the Library tab" for "'longqa ingest PATH'").

Each class also subclasses the builtin that the code raised before it was typed
(``DocumentNotFound`` is a ``LookupError``, ``QuestionTooLong`` a ``ValueError``), so callers
that catch the builtin keep working. They live in the lowest layer that raises them so every
layer above can too; ``app.catalog.ModelUnavailable``, ``app.llm.base.LLMError``,
``pipeline.store.StoreError`` and the batch errors are ``LongqaError`` subclasses as well.
"""

from __future__ import annotations

import importlib
from typing import Any


class LongqaError(Exception):
    """An error with its fix. ``str(err)`` is ``<headline>; <fix>`` (or the headline alone)."""

    reason: str = ""
    fix: str = ""
    app_fix: str = ""

    def __init__(self, reason: str = "", fix: str | None = None, *, app_fix: str | None = None) -> None:
        # Classes with a fixed wording set the three as class attributes; arguments override.
        self.reason = reason or type(self).reason
        self.fix = type(self).fix if fix is None else fix
        self.app_fix = app_fix or (type(self).app_fix if fix is None else "") or self.fix
        super().__init__(self.line())

    @property
    def headline(self) -> str:
        """What went wrong, complete on its own (subclasses add what the reason leaves out)."""
        return self.reason

    def line(self) -> str:
        return f"{self.headline}; {self.fix}" if self.fix else self.headline

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by attributes: subclasses' constructors take other arguments than ``args``.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[LongqaError], args: tuple[Any, ...], state: dict[str, Any]) -> LongqaError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class IngestError(LongqaError):
    """A single file could not be ingested.

    ``str(err)`` is a one-line message: ``cannot read 'x.pdf': <reason>; <fix>``.
    """

    def __init__(self, path: str, reason: str, fix: str = "") -> None:
        self.path = path
        super().__init__(reason, fix)

    @property
    def headline(self) -> str:
        return f"cannot read '{self.path}': {self.reason}"


class NothingIngested(LongqaError, LookupError):
    """A question was asked of an empty library."""

    reason = "nothing is ingested yet"
    fix = "run 'longqa ingest PATH' first"
    app_fix = "Add documents on the Library tab, or load the bundled samples there."


class DocumentNotFound(LongqaError, LookupError):
    """A question was scoped to a document that is not (or not yet) in the library."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(
            f"document '{doc_id}' is not ingested (or its ingest has not finished)",
            "see 'longqa docs' for the ingested documents",
            app_fix="It may have just been deleted; pick the documents again from the library.",
        )


class BadQuestion(LongqaError, ValueError):
    """The question itself cannot be asked."""


class EmptyQuestion(BadQuestion):
    reason = "the question is empty"
    fix = "type a question"
    app_fix = "Type a question in the box."


class QuestionTooLong(BadQuestion):
    """Longer text belongs in a document: a huge question overflowed every prompt."""

    def __init__(self, chars: int, limit: int) -> None:
        self.chars, self.limit = chars, limit
        super().__init__(
            f"the question is {chars:,} characters long, over the {limit:,} a question may have",
            "shorten it, or save the long text as a file, ingest it and ask about it",
            app_fix="Shorten it, or save the long text as a file, add it on the Library tab and ask "
            "about it.",
        )


class PromptTooLong(LongqaError, ValueError):
    """The documents (with the instructions, the question and the answer's room) do not fit
    the model's window, and nothing was allowed to shorten them."""


class BadSetting(LongqaError, ValueError):
    """A setting's value cannot work; ``setting`` names it (``retrieval.top_k``), when known."""

    def __init__(self, setting: str, reason: str, fix: str | None = None, *, app_fix: str | None = None):
        self.setting = setting
        super().__init__(reason, fix, app_fix=app_fix)


class FileMissing(LongqaError, FileNotFoundError):
    """A file or folder longqa was pointed at is not there (a document's source file, a model
    directory named by a setting)."""


class ConfigNotFound(FileMissing):
    """``LONGQA_CONFIG`` names a file that does not exist."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"LONGQA_CONFIG points at '{path}', which does not exist",
            "point it at your longqa.toml, or unset it",
        )


class UploadRejected(LongqaError, ValueError):
    """An uploaded file's name cannot be stored safely."""


class MissingExtra(LongqaError, ImportError):
    """A feature needs a package of an optional extra that is not installed."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        self.package, self.extra = package, extra
        super().__init__(f"{what} needs {package}, which is not installed", f"pip install 'longqa[{extra}]'")


def import_extra(module: str, extra: str, what: str, package: str = "") -> Any:
    """``importlib.import_module(module)``, or MissingExtra naming the extra that installs it
    (``package``: the distribution's name, where it is not the module's)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(what, package or module.split(".")[0], extra) from exc
