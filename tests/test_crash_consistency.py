"""SIGKILL a real `longqa ingest` at several points; afterwards only finished documents have
chunks, every chunk has its vector, and a rerun finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from pipeline.store import MetadataStore
from tests.conftest import shared

LONGQA = Path(sys.executable).with_name("longqa")


def _folder(root: Path) -> Path:
    folder = root / "docs"
    folder.mkdir()
    book = shared("lara/32k/book/The Old Man and The Sea.txt").read_text()
    for i in range(6):
        (folder / f"part{i}.txt").write_text(book[i * 6000 : (i + 1) * 6000])
    return folder


def _ingest_and_kill(home: Path, folder: Path, event: str, nth: int) -> None:
    env = {**os.environ, "LONGQA_HOME": str(home), "LONGQA_LOG": "INFO", "LONGQA_EMBEDDING__DEVICE": "cpu"}
    proc = subprocess.Popen([str(LONGQA), "ingest", str(folder)], env=env, stderr=subprocess.PIPE, text=True)
    seen = 0
    assert proc.stderr is not None
    for line in proc.stderr:
        if f"app.ingest: {event} " in line:
            seen += 1
            if seen == nth:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the ingest ended before the {nth}th '{event}'"


def _raw_state(home: Path) -> tuple[set[int], set[int], tuple[int, int]]:
    """(vec_ids of ready documents' chunks, all chunk vec_ids, (chunks, chunks with a vector))."""
    s = Settings(data_dir=home)
    store = MetadataStore(s.resolved_database_url)
    ready = {d.doc_id for d in store.list_documents() if d.status == "ready"}
    ready_vecs = set(store.vec_ids_of(ready))
    all_vecs = store.all_vec_ids()
    counts = store.counts()
    store.close()
    return ready_vecs, all_vecs, counts


@pytest.mark.parametrize("event, nth", [("staged", 1), ("embedded", 2), ("ingested", 3), ("staged", 5)])
def test_sigkill_mid_ingest_then_rerun(tmp_path: Path, event: str, nth: int) -> None:
    folder = _folder(tmp_path)
    home = tmp_path / "home"
    _ingest_and_kill(home, folder, event, nth)
    ready_vecs, all_vecs, (chunks, vectors) = _raw_state(home)
    # In the store: chunks only of finished documents, each with its vector.
    assert ready_vecs == all_vecs
    assert chunks == vectors == len(all_vecs)
    # Rerun: the interrupted document is redone, finished ones are skipped, nothing is duplicated.
    env = {**os.environ, "LONGQA_HOME": str(home), "LONGQA_EMBEDDING__DEVICE": "cpu"}
    done = subprocess.run([str(LONGQA), "ingest", str(folder)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "0 failed" in done.stderr
    ready_vecs, all_vecs, (chunks, vectors) = _raw_state(home)
    assert ready_vecs == all_vecs and chunks == vectors == len(all_vecs) > 0
    docs = subprocess.run([str(LONGQA), "docs", "--json"], env=env, capture_output=True, text=True)
    assert docs.stdout.count('"source_path"') == 6
