"""Batch concurrency against a real OpenAI-compatible server: the embedded engine's llama.cpp server
running SmolLM2 on this machine, with N requests in flight from the batch runner."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from app.batch.files import read_table
from app.batch.run import BatchOptions, run_batch
from app.llm.base import Generation, Message
from tests.conftest import free_port, llama_server, shared


@pytest.fixture(scope="module")
def server(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    args = ["--ctx", "4096", "--threads", "2", "--parallel", "2"]
    with llama_server(model_cache, log, "smollm2", args) as url:
        yield url


class PeakGenerator:
    """The HTTP generator, recording how many requests were open at the same time."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.context_window = inner.context_window
        self.prefill_tokens_per_s = inner.prefill_tokens_per_s
        self.decode_tokens_per_s = inner.decode_tokens_per_s
        self._lock = threading.Lock()
        self.now = self.peak = self.calls = 0

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def generate(self, messages: Sequence[Message], **kw) -> Generation:  # type: ignore[no-untyped-def]
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        try:
            return self.inner.generate(messages, **kw)  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self.now -= 1


def _openai_service(settings, embedder, base_url: str, retries: int = 1):  # type: ignore[no-untyped-def]
    from app.factories import build_generator
    from app.service import QAService

    settings.llm.backend = "openai"
    settings.llm.base_url = base_url
    settings.llm.model = "smollm2"
    settings.llm.context_window = 4096
    settings.llm.max_tokens = 6
    settings.llm.retries = retries
    settings.retrieval.top_k = 1
    return QAService(settings, embedder=embedder, generator=PeakGenerator(build_generator(settings)))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    shutil.copy(shared("pdf/docling_multi_page.pdf"), d / "multi_page.pdf")
    shutil.copy(shared("transcripts/hf-course-en/12_tokenizers-overview.srt"), d / "tokenizers.srt")
    shutil.copy(shared("transcripts/hf-course-en/43_why-are-fast-tokenizers-called-fast.srt"), d / "fast.srt")
    return d


def test_n_requests_in_flight(server: str, settings, embedder, folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svc = _openai_service(settings, embedder, server)
    q = tmp_path / "q.txt"
    q.write_text("What does the tokenizer do?\n", encoding="utf-8")
    out = tmp_path / "r.csv"
    summary = run_batch(svc, BatchOptions(q, out, folder, mode="rag", concurrency=3))
    gen: PeakGenerator = svc.generator
    assert summary.answered == 3 and summary.failed == 0 and summary.concurrency == 3
    assert gen.calls == 3 and gen.peak == 3 and summary.peak_in_flight == 3
    rows = read_table(out)
    assert [(r["row"], r["doc"]) for r in rows] == [
        ("1", "fast.srt"),
        ("1", "multi_page.pdf"),
        ("1", "tokenizers.srt"),
    ]
    for r in rows:
        assert r["status"] == "ok" and r["mode"] == "rag" and r["model"] == "smollm2" and r["answer"]
        assert int(r["prompt_tokens"]) > 0
    again = run_batch(svc, BatchOptions(q, out, folder, mode="rag", concurrency=3))
    assert again.resumed == 3 and gen.calls == 3
    svc.close()


def test_server_down_stops_early_with_the_reason(settings, embedder, folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svc = _openai_service(settings, embedder, f"http://127.0.0.1:{free_port()}/v1", retries=0)
    q = tmp_path / "q.txt"
    q.write_text("What is this about?\nWho speaks?\nWhen?\n", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    opts = BatchOptions(q, out, folder, mode="rag", concurrency=1, max_consecutive_failures=2)
    summary = run_batch(svc, opts)
    assert summary.failed == 2 and summary.pending == 7 and summary.answered == 0
    assert summary.stopped.startswith("stopped after 2 failures in a row; the last: LLMError: ")
    assert "LLM server at" in summary.stopped and "check that it is running" in summary.stopped
    assert summary.stopped.endswith("Fix the cause and rerun with --retry-failed")
    rows = read_table(out)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["error"].startswith("LLMError: ") for r in failed)
    assert all("LLM server at" in r["error"] for r in failed)
    svc.close()
