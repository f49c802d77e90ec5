"""The longqa console script, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import shared

LONGQA = Path(sys.executable).with_name("longqa")


def run(args: list[str], home: Path, model_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "96",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
    }
    return subprocess.run([str(LONGQA), *args], env=env, capture_output=True, text=True, timeout=600)


def test_ingest_ask_docs(tmp_path: Path, model_cache: Path) -> None:
    home = tmp_path / "home"
    pdf = tmp_path / "redp.pdf"
    shutil.copy(shared("pdf/docling_redp5110_sampled.pdf"), pdf)
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a pdf at all")
    r = run(["ingest", str(pdf), str(bad), str(tmp_path / "nope.txt")], home, model_cache)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(line.startswith("ingested") and "redp.pdf" in line for line in lines)
    failed = [line for line in lines if line.startswith("failed")]
    assert len(failed) == 2
    assert any(f"cannot read '{bad}': not a readable PDF" in line for line in failed)
    assert any("nope.txt': no such file" in line for line in failed)
    assert "1 ingested, 0 unchanged, 2 failed" in r.stderr

    again = run(["ingest", str(pdf)], home, model_cache)
    assert "0 ingested, 1 unchanged" in again.stderr

    docs = json.loads(run(["docs", "--json"], home, model_cache).stdout)
    assert len(docs) == 1 and docs[0]["n_pages"] == 18 and docs[0]["media_type"] == "pdf"

    r = run(
        ["ask", "What was the average brand equity loss per attack in 2013?", "--json"], home, model_cache
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"answer", "mode", "reason", "citations", "usage"}
    assert out["mode"] in ("rag", "lc") and out["reason"]
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["seconds"] > 0
    for c in out["citations"]:
        assert set(c) >= {"doc_id", "pages", "span", "quote", "verified"}
    assert any(c["verified"] and c["pages"] == [5, 5] for c in out["citations"]), out


def test_ask_errors_are_one_clear_line(tmp_path: Path, model_cache: Path) -> None:
    r = run(["ask", "anything?"], tmp_path / "empty", model_cache)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: nothing is ingested yet; run 'longqa ingest PATH' first"
    r = run(["ask", "anything?", "--mode", "fast"], tmp_path / "empty", model_cache)
    assert r.returncode == 2 and "unknown mode 'fast'" in r.stderr
