"""Stopping a request, and watching it read its prompt, from another thread.

A front door that answers in a worker thread (the Streamlit page) runs the work inside
``with controlled(control):``. The LLM backends look up the current control and

- stop when ``control.cancel()`` is called: they check it between streamed events and
  raise :class:`Cancelled`; a backend whose server may be busy for longer without an event
  (the embedded engine reading a long prompt) registers a hook that ends that work at once
  (:meth:`Control.on_cancel`);
- say how far they are in reading the prompt (:attr:`Control.prefill`), with the speed
  measured on this machine, so the page can show an honest estimate.

Without a control (the CLI, batch runs, evals) nothing changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from pipeline.errors import LongqaError


class Cancelled(LongqaError):
    """The user stopped the request."""

    reason = "stopped"
    fix = ""


@dataclass
class PrefillState:
    """The prompt being read: ``tokens`` to evaluate (not counting cached ones), ``done`` so far
    as the engine reported, and the prefill speed measured before it started."""

    tokens: int
    tokens_per_s: float
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    finished: bool = False

    @property
    def estimate_s(self) -> float:
        """Seconds the whole prompt should take at the measured speed."""
        return self.tokens / self.tokens_per_s if self.tokens_per_s > 0 else 0.0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def fraction(self) -> float:
        """How far reading has got: the engine's own count, or the measured speed's
        projection when that is ahead (engines report once per batch), below 1 until done."""
        if self.finished:
            return 1.0
        reported = self.done / self.tokens if self.tokens else 0.0
        projected = self.elapsed_s / self.estimate_s if self.estimate_s else 0.0
        return min(0.99, max(reported, projected))

    @property
    def left_s(self) -> float:
        """Seconds still to go at the measured speed (0 when overdue: the page says so)."""
        if self.tokens_per_s <= 0:
            return 0.0
        by_count = (self.tokens - self.done) / self.tokens_per_s
        by_clock = self.estimate_s - self.elapsed_s
        return max(0.0, min(by_count, by_clock) if self.done else by_clock)


class Control:
    """One request's stop switch and progress, shared between the worker and the page."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self.prefill: PrefillState | None = None
        self.cancelled_at: float | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        """Stop the request: set the flag and run the hooks (from any thread, at most once)."""
        with self._lock:
            if self._event.is_set():
                return
            self.cancelled_at = time.monotonic()
            self._event.set()
            hooks = list(self._hooks.values())
        for hook in hooks:
            hook()

    def check(self) -> None:
        """Raise :class:`Cancelled` once the request is stopped."""
        if self._event.is_set():
            raise Cancelled()

    @contextmanager
    def on_cancel(self, hook: Callable[[], None]) -> Iterator[None]:
        """Run ``hook`` if the request is stopped while inside this block (at once if it
        already is)."""
        with self._lock:
            key = self._next
            self._next += 1
            self._hooks[key] = hook
            now = self._event.is_set()
        if now:
            hook()
        try:
            yield
        finally:
            with self._lock:
                self._hooks.pop(key, None)

    def reading(self, tokens: int, tokens_per_s: float) -> PrefillState:
        """A new prompt is being read (a re-check or a second answer reads another)."""
        self.prefill = PrefillState(tokens, tokens_per_s)
        return self.prefill


_CURRENT: ContextVar[Control | None] = ContextVar("longqa_control", default=None)


def current() -> Control | None:
    return _CURRENT.get()


def check() -> None:
    """Raise :class:`Cancelled` when the current request (if any) is stopped."""
    ctl = _CURRENT.get()
    if ctl is not None:
        ctl.check()


@contextmanager
def controlled(control: Control) -> Iterator[Control]:
    token = _CURRENT.set(control)
    try:
        yield control
    finally:
        _CURRENT.reset(token)
