"""The longqa console script, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port, shared

LONGQA = Path(sys.executable).with_name("longqa")


def run(args: list[str], home: Path, model_cache: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "96",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        **extra_env,
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


def test_typed_errors_reach_the_cli_as_their_reason_and_fix(tmp_path: Path, model_cache: Path) -> None:
    """Each typed error (pipeline/errors.py) prints as one line, ``error: <reason>; <fix>``, with
    the exit status 1 and no traceback, whichever command and layer raised it."""
    home = tmp_path / "empty"

    def one_line(r: subprocess.CompletedProcess[str]) -> str:
        assert r.returncode == 1, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]  # logs may precede it
        assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        return errors[0]

    # QuestionTooLong, raised by QAService.ask before it reads the library
    r = run(["ask", "why " * 2_000], home, model_cache)
    assert one_line(r) == (
        "error: the question is 7,999 characters long, over the 4,000 a question may have; "
        "shorten it, or save the long text as a file, ingest it and ask about it"
    )
    # BadSetting from an environment variable pydantic rejects (before: a traceback)
    r = run(["docs"], home, model_cache, LONGQA_RETRIEVAL__TOP_K="0")
    assert one_line(r) == (
        "error: a setting is not valid (retrieval.top_k: Input should be greater than or equal to 1); "
        "correct it in longqa.toml or LONGQA_RETRIEVAL__TOP_K"
    )
    # ConfigNotFound, raised while the settings are read
    r = run(["models"], home, model_cache, LONGQA_CONFIG=str(tmp_path / "nowhere.toml"))
    assert one_line(r) == (
        f"error: LONGQA_CONFIG points at '{tmp_path / 'nowhere.toml'}', which does not exist; "
        "point it at your longqa.toml, or unset it"
    )
    # DocumentNotFound: a scope naming a document the library does not hold
    r = run(
        ["ingest", str(Path(__file__).parents[1] / "app" / "samples" / "gold-bug-opening.txt")],
        home,
        model_cache,
    )
    assert r.returncode == 0, r.stderr
    r = run(["ask", "Who found the bug?", "--doc", "0123456789abcdef"], home, model_cache)
    assert one_line(r) == (
        "error: document '0123456789abcdef' is not ingested (or its ingest has not finished); "
        "see 'longqa docs' for the ingested documents"
    )
    # An LLMError with its fix: the OpenAI-compatible server is not there
    url = f"http://127.0.0.1:{free_port()}/v1"
    server = {"LONGQA_LLM__BACKEND": "openai", "LONGQA_LLM__BASE_URL": url, "LONGQA_LLM__RETRIES": "0"}
    r = run(["ask", "Who found the bug?", "--mode", "rag"], home, model_cache, **server)
    line = one_line(r)
    assert line.startswith(f"error: cannot reach the LLM server at {url} (ConnectError: "), line
    assert line.endswith("); check that it is running and that llm.base_url is right"), line
