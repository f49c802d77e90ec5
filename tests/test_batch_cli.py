"""``longqa batch`` as a user runs it: a real subprocess stopped with Ctrl-C, then killed outright,
then run to the end; no finished row is answered twice."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import shared

LONGQA = Path(sys.executable).with_name("longqa")


def _env(home: Path, model_cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "16",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_RETRIEVAL__TOP_K": "1",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
    }


def _journal_lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def _start_and_stop(cmd: list[str], env: dict[str, str], journal: Path, after: int, sig: int) -> int:
    """Start the batch, wait until ``after`` rows are journaled, send ``sig``; the exit code."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while len(_journal_lines(journal)) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the batch ended before it could be stopped: {proc.communicate()[1]}"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=600)
    if sig == signal.SIGINT:
        assert "interrupted: rerun the same command to continue" in err, err
    return proc.returncode


@pytest.mark.slow
def test_ctrl_c_then_kill_then_finish(tmp_path: Path, model_cache: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(shared("pdf/docling_multi_page.pdf"), docs / "multi_page.pdf")
    shutil.copy(shared("transcripts/hf-course-en/12_tokenizers-overview.srt"), docs / "tokenizers.srt")
    q = tmp_path / "q.txt"
    q.write_text("What is this about?\n\nWhat does the tokenizer do?\nWhen was the typewriter patented?\n")
    out = tmp_path / "results.csv"
    journal = tmp_path / "results.csv.journal.jsonl"
    env = _env(tmp_path / "home", model_cache)
    cmd = [
        str(LONGQA),
        "batch",
        "--docs",
        str(docs),
        "--questions",
        str(q),
        "--out",
        str(out),
        "--mode",
        "rag",
    ]

    assert _start_and_stop(cmd, env, journal, 1, signal.SIGINT) == 130
    after_int = _journal_lines(journal)
    statuses = [r["status"] for r in csv.DictReader(out.open(encoding="utf-8"))]
    assert statuses.count("ok") == len(after_int) and statuses.count("pending") == 6 - len(after_int)

    _start_and_stop(cmd, env, journal, len(after_int) + 1, signal.SIGKILL)  # a crash: no cleanup at all
    after_kill = _journal_lines(journal)
    assert len(after_kill) > len(after_int)

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert f"{len(after_kill)} already done" in done.stderr and "skipped 1 empty line(s): 2" in done.stderr
    final = _journal_lines(journal)
    keys = [r["key"] for r in final]
    assert len(keys) == len(set(keys)) == 6  # every row answered exactly once across three runs
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["ok"] * 6
    first_answers = {r["key"]: r["answered_at"] for r in after_kill}
    assert all(r["answered_at"] == first_answers[r["key"]] for r in rows if r["key"] in first_answers)
