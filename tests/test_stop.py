"""Stopping an answer: the real embedded engine (SmolLM2 on llama.cpp in its child process) is
stopped while it reads a long prompt and while it writes, and answers the next question.

How long a stop takes on this machine is measured by benchmarks/app_latency.py (docs/app.md);
here the bound is loose, only far below what the stopped work would have taken.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from app.catalog import SAMPLES_DIR
from app.llm.base import Message
from app.llm.control import Cancelled, Control, controlled

ROOT = Path(__file__).resolve().parents[1]


def long_prompt(n_words: int = 5000) -> list[Message]:
    text = (SAMPLES_DIR / "gold-bug-opening.txt").read_text(encoding="utf-8")
    words = (text.split() * (n_words // max(1, len(text.split())) + 1))[:n_words]
    return [Message("user", " ".join(words) + "\n\nSummarise the story above.")]


def run_in_thread(gen, messages, ctl: Control, max_tokens: int):  # type: ignore[no-untyped-def]
    got: dict[str, object] = {"pieces": []}

    def work() -> None:
        with controlled(ctl):
            try:
                got["generation"] = gen.generate(
                    messages, max_tokens=max_tokens, on_text=got["pieces"].append
                )
            except Cancelled:
                got["cancelled_at"] = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the test reports it
                got["error"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, got


def wait_for(cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_answers_next(smol) -> None:  # type: ignore[no-untyped-def]
    out = smol.generate([Message("user", "Name a colour.")], max_tokens=8)
    assert out.text.strip() and out.completion_tokens > 0


def test_stop_while_reading_a_long_prompt_ends_the_engine_work(smol) -> None:  # type: ignore[no-untyped-def]
    assert_answers_next(smol)  # the engine is up
    ctl = Control()
    t, got = run_in_thread(smol, long_prompt(), ctl, 32)
    wait_for(lambda: ctl.prefill is not None)
    time.sleep(0.3)  # well inside the reading of ~7,000 tokens
    reading = ctl.prefill
    assert reading is not None and reading.tokens > 5000 and not reading.finished
    assert reading.tokens_per_s > 0 and reading.estimate_s > 1.0  # the estimate the page shows
    t0 = time.monotonic()
    ctl.cancel()
    t.join(30)
    assert "cancelled_at" in got, got.get("error")
    assert got["pieces"] == []  # nothing was written: it was stopped while reading
    took = float(got["cancelled_at"]) - t0  # type: ignore[arg-type]
    assert took < min(5.0, reading.estimate_s), took
    # The engine was killed (no event came within the grace period) and is running again.
    assert_answers_next(smol)


def test_stop_while_writing_closes_the_stream_and_keeps_the_engine(smol) -> None:  # type: ignore[no-untyped-def]
    assert_answers_next(smol)
    pid = smol._engine.proc.pid
    ctl = Control()
    msgs = [Message("user", "Count from one to five hundred in words, one number per line.")]
    t, got = run_in_thread(smol, msgs, ctl, 1000)
    wait_for(lambda: len(got["pieces"]) >= 3)  # type: ignore[arg-type]
    t0 = time.monotonic()
    ctl.cancel()
    t.join(30)
    assert "cancelled_at" in got, got.get("error")
    assert float(got["cancelled_at"]) - t0 < 5.0  # type: ignore[arg-type]
    assert len(got["pieces"]) < 900  # type: ignore[arg-type]
    # Tokens kept coming, so the stream was closed rather than the engine killed.
    assert smol._engine.proc.pid == pid
    assert_answers_next(smol)


def test_a_stopped_request_does_not_start(smol) -> None:  # type: ignore[no-untyped-def]
    ctl = Control()
    ctl.cancel()
    with controlled(ctl), pytest.raises(Cancelled):
        smol.generate([Message("user", "Hello")], max_tokens=4)
    assert_answers_next(smol)


def test_the_page_job_shows_the_route_first_and_can_be_stopped(service, embedder) -> None:  # type: ignore[no-untyped-def]
    from app.ui.asking import AskJob
    from app.ui.library import Library

    service.ingest([SAMPLES_DIR])
    lib = Library(service.settings, service=service)
    order: list[str] = []
    job = AskJob(lib, service, "Who developed WordStar?", "rag", [])
    orig_route, orig_text = job._on_route, job._on_text

    def on_route(d):  # type: ignore[no-untyped-def]
        order.append("route")
        orig_route(d)

    def on_text(piece: str) -> None:
        order.append("text")
        orig_text(piece)

    job._on_route, job._on_text = on_route, on_text  # type: ignore[method-assign]
    job.start()
    assert job.wait(300)
    out = job.outcome
    assert out is not None and out.answer is not None and not out.stopped
    assert order[0] == "route" and "text" in order  # the route is known before the first word
    assert job.route is not None and job.route.mode == "rag" and job.route.forced

    # Stopped once it writes: the outcome says so and keeps what was written.
    job = AskJob(lib, service, "Tell me everything about word processors.", "lc", []).start()
    wait_for(lambda: bool(job.text) or job.finished)
    job.stop()
    assert job.wait(30)
    assert job.outcome is not None
    if not job.outcome.stopped:  # the small model may finish its answer before the stop lands
        assert job.outcome.answer is not None
    else:
        assert job.outcome.answer is None and job.outcome.problem is None
