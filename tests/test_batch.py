"""Batch runs end to end with the real embedder and SmolLM2 (llama.cpp, in process), on real
documents: interrupted and resumed, a failed row retried only when asked, shared LC prefixes."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.batch.files import read_table
from app.batch.run import BatchOptions, BatchProgress, run_batch
from app.llm.base import Generation, LLMError, Message
from tests.conftest import shared

PDF = "pdf/docling_multi_page.pdf"
SRT = "transcripts/hf-course-en/12_tokenizers-overview.srt"


class CountingGenerator:
    """The real model, counting the prompts it is given; it can be told to fail on a word."""

    def __init__(self, inner, fail_on: str = "") -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.context_window = inner.context_window
        self.prefill_tokens_per_s = inner.prefill_tokens_per_s
        self.fail_on = fail_on
        self.calls: list[str] = []

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def generate(self, messages: Sequence[Message], **kw) -> Generation:  # type: ignore[no-untyped-def]
        prompt = messages[-1].content
        self.calls.append(prompt)
        if self.fail_on and self.fail_on in prompt:
            raise LLMError("the test server is down; start it")
        return self.inner.generate(messages, **kw)  # type: ignore[no-any-return]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    (d / "talks").mkdir(parents=True)
    shutil.copy(shared(PDF), d / "multi_page.pdf")
    shutil.copy(shared(SRT), d / "talks" / "tokenizers.srt")
    return d


@pytest.fixture
def svc(settings, embedder, smol):  # type: ignore[no-untyped-def]
    from app.service import QAService

    settings.llm.max_tokens = 12
    settings.retrieval.top_k = 2
    service = QAService(settings, embedder=embedder, generator=CountingGenerator(smol, fail_on="FAIL-ME"))
    yield service
    service.close()


QUESTIONS = (
    "id,question,doc,mode,gold\n"
    "q1,When was the typewriter patented?,multi_page.pdf,rag,1868\n"
    "q1-again,When was the typewriter patented?,multi_page.pdf,rag,1868\n"
    "q2,What is the objective of the tokenizer?,tokenizers.srt,lc,translate text into numbers\n"
    "q3,Which three tokenization algorithms are covered?,talks/tokenizers.srt,lc,word character subword\n"
    "q4,What is FAIL-ME about?,multi_page.pdf,rag,\n"
    "q5,Who wrote it?,missing.pdf,,\n"
    "q6,,multi_page.pdf,rag,\n"
)


def test_interrupt_resume_retry(svc, folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    qfile = tmp_path / "questions.csv"
    qfile.write_text(QUESTIONS, encoding="utf-8")
    out = tmp_path / "results.jsonl"
    opts = BatchOptions(qfile, out, folder, mode="auto")
    gen: CountingGenerator = svc.generator

    seen: list[BatchProgress] = []

    def stop_after_first(p: BatchProgress) -> None:
        seen.append(p)
        raise KeyboardInterrupt  # what Ctrl-C does between two answers

    first = run_batch(svc, opts, stop_after_first)
    assert first.interrupted and first.answered + first.failed == 1 and len(gen.calls) == 1
    assert seen[0].total == 4 and seen[0].done == 1  # q1 and q1-again are one row to answer
    rows = read_table(out)
    assert [r["status"] for r in rows].count("pending") == 3  # q2, q3, q4; q1-again shares q1
    assert {r["status"] for r in rows if r["id"] in ("q5", "q6")} == {"invalid"}

    second = run_batch(svc, opts)
    assert not second.interrupted and second.resumed == 1
    assert second.answered == 2 and second.failed == 1  # q2 + q3 answered, q4 failed
    assert len(gen.calls) == 4  # nothing answered twice
    by_id = {r["id"]: r for r in read_table(out)}
    assert list(by_id) == ["q1", "q1-again", "q2", "q3", "q4", "q5", "q6"]  # input order

    q1 = by_id["q1"]
    assert q1["status"] == "ok" and q1["mode"] == "rag" and q1["answer"] and q1["reason"]
    assert q1["doc"] == "multi_page.pdf" and q1["gold"] == "1868"
    assert q1["tokens"] == q1["prompt_tokens"] + q1["completion_tokens"] > 0 and q1["seconds"] > 0
    assert by_id["q1-again"]["answer"] == q1["answer"] and by_id["q1-again"]["key"] == q1["key"]
    for c in q1["citations"]:
        assert c["doc"] == "multi_page.pdf" and c["where"].startswith("p") and isinstance(c["verified"], bool)

    q2, q3 = by_id["q2"], by_id["q3"]
    assert q2["doc"] == q3["doc"] == "talks/tokenizers.srt" and q2["mode"] == q3["mode"] == "lc"
    # q3 follows q2 on the same document: its whole document prefix comes from the KV cache.
    assert q3["cached_tokens"] > 0.8 * q2["prompt_tokens"]
    for c in q2["citations"] + q3["citations"]:
        assert c["time"] and c["time"][0] <= c["time"][1] and ":" in c["where"]

    assert by_id["q4"]["status"] == "failed"
    assert by_id["q4"]["error"] == "LLMError: the test server is down; start it"
    assert by_id["q5"]["error"].startswith("line 7: unknown document 'missing.pdf'; known documents:")
    assert by_id["q6"]["error"] == "line 8: the question is empty"

    third = run_batch(svc, opts)  # failed rows stay failed unless asked
    assert len(gen.calls) == 4 and third.answered == third.failed == 0
    assert third.resumed == 3 and third.failed_before == 1

    gen.fail_on = ""
    fourth = run_batch(svc, BatchOptions(qfile, out, folder, retry_failed=True))
    assert len(gen.calls) == 5 and fourth.answered == 1 and fourth.failed_before == 0
    assert {r["id"]: r["status"] for r in read_table(out)}["q4"] == "ok"
    assert "1 answered now; 3 already done; 2 invalid" in fourth.text()


def test_cli_batch_bad_input_is_one_clear_line(tmp_path: Path, folder: Path) -> None:
    from app.terminal.cli import app

    runner = CliRunner()
    q = tmp_path / "q.csv"
    q.write_text("prompt\nWhat?\n", encoding="utf-8")
    home = ["--data-dir", str(tmp_path / "home")]
    r = runner.invoke(app, ["batch", "--docs", str(folder), "--questions", str(q), "--out", "r.csv", *home])
    assert r.exit_code == 2
    assert "has no question column (columns: prompt); name the column" in r.output
    r = runner.invoke(
        app, ["batch", "--docs", str(folder), "--questions", str(q), "--out", str(tmp_path / "r.xlsx"), *home]
    )
    assert r.exit_code == 2 and "unknown output type '.xlsx'" in r.output
    q = tmp_path / "q.txt"
    q.write_text("What?\n", encoding="utf-8")
    r = runner.invoke(
        app, ["batch", "--docs", str(tmp_path / "nope"), "--questions", str(q), "--out", "r.csv", *home]
    )
    assert r.exit_code == 2 and "documents folder" in r.output and "does not exist" in r.output
