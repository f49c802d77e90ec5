"""A question answered in a worker thread, so the page stays live: it shows the route as soon
as it is decided, how far the model is in reading the prompt (with an estimate from the speed
measured on this machine), the answer as it is decoded, and offers a Stop button that ends the
model's work (``app.llm.control``).

The page polls :class:`AskJob`; nothing here calls Streamlit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from app.llm.control import Control, PrefillState, controlled
from app.service import QAService
from app.ui.library import Draft, Library, Outcome, Turn
from pipeline.types import Mode, RouteDecision


def plain_reason(reason: str) -> str:
    """Why an answer is looked at again, in words a reader of the answer understands (the
    router's and the re-check's own reasons are for the log and the details)."""
    low = reason.lower()
    if "cited passage did not state" in low or "checked it once more" in low:
        return (
            "A passage this draft cites does not say what the draft says, so the model is checking "
            "the draft against the sources once more"
        )
    if "whole document" in low:
        return (
            "This draft may not be well supported by the passages found, so the whole document is "
            "being read to answer again"
        )
    if "more passages" in low:
        return "This draft may not be well supported by the passages found, so more passages are being read"
    return "The system is checking this draft once more"


class AskJob:
    """One question in flight. ``text`` is the current answer's streamed text, ``drafts`` the
    ones shown before a re-check or a fallback, ``route`` the decision once made."""

    def __init__(
        self,
        lib: Library,
        view: QAService,
        question: str,
        mode: Mode,
        scope: Sequence[str],
    ) -> None:
        self.lib, self.view = lib, view
        self.question, self.mode, self.scope = question, mode, list(scope)
        self.control = Control()
        self.route: RouteDecision | None = None
        self.drafts: list[Draft] = []
        self.outcome: Outcome | None = None
        self.started = time.monotonic()
        self.first_text_s: float | None = None
        self._pieces: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True, name="ask")
        self._recorded: Turn | None = None

    # -- the worker --------------------------------------------------------------------
    def start(self) -> AskJob:
        self._thread.start()
        return self

    def _on_text(self, piece: str) -> None:
        with self._lock:
            if self.first_text_s is None:
                self.first_text_s = time.monotonic() - self.started
            self._pieces.append(piece)

    def _on_restart(self, reason: str) -> None:
        with self._lock:
            text = "".join(self._pieces).strip()
            if text:
                self.drafts.append(Draft(text, plain_reason(reason)))
            self._pieces = []

    def _on_route(self, decision: RouteDecision) -> None:
        self.route = decision

    def _work(self) -> None:
        try:
            with controlled(self.control):
                out = self.lib.ask(
                    self.view,
                    self.question,
                    self.mode,
                    self.scope,
                    on_text=self._on_text,
                    on_restart=self._on_restart,
                    on_route=self._on_route,
                )
        except BaseException as exc:  # noqa: BLE001 - Library.ask already turns errors into problems
            from app.ui.errors import explain

            out = Outcome(None, explain(exc), time.monotonic() - self.started, self.mode)
        self.outcome = out
        self._done.set()

    # -- the page's side -----------------------------------------------------------------
    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._pieces)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def prefill(self) -> PrefillState | None:
        return self.control.prefill

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop the model's work (it ends within the engine's grace period) and let the worker
        finish on its own."""
        self.control.cancel()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def record(self, chat: list[Turn], on_record: Callable[[Turn], None] | None = None) -> Turn:
        """Put this question's turn in ``chat`` once: the answer when it finished, else a stopped
        turn with what was streamed. Called by the page run that asked (when it ends, or when a
        rerun interrupts it) and by the next page run (which may start before the interrupted one
        has ended): whichever comes first records it, the other gets the same turn. ``on_record``
        (saving the turn) runs once, by the call that records it."""
        with self._lock:
            if self._recorded is None:
                if self.finished and self.outcome is not None and not self.control.cancelled:
                    out = self.outcome
                else:
                    out = Outcome(None, None, self.elapsed_s, self.mode, stopped=True)
                self._recorded = Turn(
                    self.question,
                    self.mode,
                    tuple(self.scope),
                    out,
                    tuple(self.drafts),
                    "".join(self._pieces),
                    self.route,
                )
                chat.append(self._recorded)
                if on_record is not None:
                    on_record(self._recorded)
            return self._recorded


def reading_label(p: PrefillState) -> str:
    """'Reading 5,800 tokens of your documents: about 40 s left (measured here: 150 tokens/s)'."""
    speed = f"measured here: {p.tokens_per_s:,.0f} tokens/s"
    head = f"Reading {p.tokens:,} tokens of the prompt"
    left = p.left_s
    if p.tokens_per_s <= 0:
        return f"{head}… ({p.elapsed_s:.0f} s so far)"
    if left <= 0:
        late = f"taking longer than the {p.estimate_s:.0f} s expected ({speed})"
        return f"{head}: {late}, {p.elapsed_s:.0f} s so far"
    return f"{head}: about {left:.0f} s left of {p.estimate_s:.0f} s ({speed})"
