"""The app as two replicas on one PostgreSQL with pgvector: two real `streamlit run` servers with
their own LONGQA_HOME and the same LONGQA_DATABASE_URL; a document ingested through one is found
by a question through the other, and neither builds a FAISS cache (the database searches)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.test_browser import QUESTION, ROOT, _button, _wait, browser  # noqa: F401

pytestmark = pytest.mark.slow


@contextmanager
def replica(home: Path, db_url: str, model_cache: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_DATABASE_URL": db_url,
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "48",
        "LONGQA_LLM__THREADS": "2",
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "LONGQA_RETRIEVAL__TOP_K": "3",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.headless=true"]
    cmd += [f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false"]
    cmd += ["--server.fileWatcherType=none"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("streamlit did not start:\n" + log.read_text()[-3000:])
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_two_replicas_share_one_database(
    pgvector_url: str,
    tmp_path: Path,
    model_cache: Path,
    browser,  # type: ignore[no-untyped-def]  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    home_a, home_b = tmp_path / "a", tmp_path / "b"
    with (
        replica(home_a, pgvector_url, model_cache, tmp_path / "a.log") as url_a,
        replica(home_b, pgvector_url, model_cache, tmp_path / "b.log") as url_b,
    ):
        browser.get(url_a)  # ingest through replica A
        _wait(
            browser, "A's empty-library button", lambda d: _button(d, "Load the sample documents"), 120
        ).click()
        chat = "textarea[data-testid='stChatInputTextArea']"
        _wait(browser, "A's chat input", lambda d: d.find_elements(By.CSS_SELECTOR, chat), 300)
        browser.switch_to.new_window("tab")
        browser.get(url_b)  # ask through replica B, which ingested nothing
        _wait(browser, "B's chat input", lambda d: d.find_elements(By.CSS_SELECTOR, chat), 240)
        _wait(browser, "B's mode control", lambda d: _button(d, "RAG")).click()
        time.sleep(1.0)
        box = browser.find_element(By.CSS_SELECTOR, chat)
        box.send_keys(QUESTION)
        box.send_keys(Keys.ENTER)

        def answered(d):  # type: ignore[no-untyped-def]
            msgs = d.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")
            if len(msgs) < 2 or d.find_elements(By.CSS_SELECTOR, "[data-testid='stSpinner']"):
                return None
            return msgs[1] if re.search(r"\d+/\d+ citations verified", msgs[1].text) else None

        answer = _wait(browser, "B's answer", answered, 600)
        assert "word-processor-history" in answer.text or "WordStar" in answer.text, answer.text
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    # Both replicas searched in the database: neither built a FAISS cache.
    assert not (home_a / "index.faiss").exists() and not (home_b / "index.faiss").exists()
