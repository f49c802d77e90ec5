"""Real processes on one store (SQLite and PostgreSQL): concurrent ingests, a reader while a
writer is mid-ingest, a writer SIGKILLed mid-ingest, and a damaged index cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.ingest import STOP_AFTER_STAGE_ENV

LONGQA = Path(sys.executable).with_name("longqa")
WORDS = ["river", "lantern", "copper", "orchard", "violin", "glacier", "meadow", "harbor", "falcon", "ember"]

READER = """
import json, sys
from app.service import QAService
from app.settings import Settings
svc = QAService(Settings())
hits = svc.retriever.retrieve(sys.argv[1], k=3)
chunks, vectors = svc.store.counts()
print(json.dumps({
    "ready": sorted(d.source_path for d in svc.documents()),
    "all": sorted([d.source_path, d.status] for d in svc.store.list_documents()),
    "debris": [d.source_path for d in svc.debris],
    "hits": [h.chunk.text for h in hits],
    "index": len(svc.index), "chunks": chunks, "vectors": vectors,
}))
svc.close()
"""


def _files(folder: Path, tag: str, n: int) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        body = "\n\n".join(
            f"Note {tag}-{i} paragraph {p}: the {word} of {tag} number {i} keeps its own story, "
            f"codeword {tag}{i}x{p}."
            for p in range(12)
        )
        path = folder / f"{tag}-{i}.txt"
        path.write_text(body)
        out.append(path.resolve())
    return out


def _env(home: Path, db_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_DATABASE_URL": db_url,
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "LONGQA_LOG": "INFO",
        **extra,
    }


def _read(home: Path, db_url: str, query: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-c", READER, query],
        env=_env(home, db_url, LONGQA_LOG="WARNING"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _wait_stopped(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the ingest exited ({proc.returncode}) before stopping after its first stage")
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.1)
    pytest.fail("the ingest did not stop after staging within 240 s")


def test_two_ingests_at_once_lose_nothing(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    a = _files(tmp_path / "a", "alpha", 4)
    b = _files(tmp_path / "b", "beta", 4)
    env = _env(home, db_url)
    procs = [
        subprocess.Popen(
            [str(LONGQA), "ingest", str(d)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "4 ingested, 0 unchanged, 0 failed" in out + err, out + err[-2000:]
    state, _ = _read(home, db_url, "the violin of beta number 4")
    assert state["ready"] == sorted(str(p) for p in a + b)  # every document, exactly once
    assert [s for _p, s in state["all"]] == ["ready"] * 8
    assert state["chunks"] == state["vectors"] == state["index"] > 8
    assert any("beta" in h for h in state["hits"])


def test_reader_during_ingest_keeps_the_live_writers_document(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _files(tmp_path / "first", "gamma", 1)
    env = _env(home, db_url)
    done = subprocess.run([str(LONGQA), "ingest", str(first[0])], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    more = _files(tmp_path / "more", "delta", 2)
    # The writer stages its first document and stops itself there; its lease (1 s) runs out.
    writer = subprocess.Popen(
        [str(LONGQA), "ingest", str(tmp_path / "more")],
        env={**env, STOP_AFTER_STAGE_ENV: "1", "LONGQA_INGEST__LEASE_S": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_stopped(writer)
        time.sleep(2)  # the lease has expired, but the writer is alive on this host
        state, err = _read(home, db_url, "the river of delta number 0")
        assert state["debris"] == [] and "unfinished" not in err
        assert [str(more[0]), "pending"] in state["all"]  # kept, and invisible to readers
        assert state["ready"] == [str(first[0])]
        assert all("delta" not in h for h in state["hits"])
        # A second ingest of that file leaves it to the live writer and says so.
        again = subprocess.run(
            [str(LONGQA), "ingest", str(more[0])], env=env, capture_output=True, text=True, timeout=600
        )
        assert again.returncode == 0, again.stderr[-3000:]
        busy = [line for line in again.stderr.splitlines() if line.startswith("busy")]
        assert len(busy) == 1, again.stderr[-3000:]
        assert f"'{more[0]}' is being ingested" in busy[0]
        assert busy[0].endswith("it lands when that ingest ends")
        assert "0 ingested, 0 unchanged, 0 failed, 0 chunks added, 1 being ingested by another process" in (
            again.stderr
        )
    finally:
        writer.send_signal(signal.SIGCONT)
    out, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err[-3000:]
    assert "2 ingested, 0 unchanged, 0 failed" in out + err
    state, _ = _read(home, db_url, "the river of delta number 0")
    assert state["ready"] == sorted(str(p) for p in first + more)
    assert state["chunks"] == state["vectors"] == state["index"]
    assert any("delta-0" in h for h in state["hits"])


def test_sigkilled_writer_is_cleaned_up_and_reported(db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = _files(tmp_path / "docs", "omega", 2)
    env = _env(home, db_url)
    writer = subprocess.Popen(
        [str(LONGQA), "ingest", str(tmp_path / "docs")],
        env={**env, STOP_AFTER_STAGE_ENV: "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_stopped(writer)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    state, err = _read(home, db_url, "the river of omega number 0")
    assert state["debris"] == [str(files[0])]
    notes = [line for line in err.splitlines() if "unfinished ingest" in line]
    assert len(notes) == 1 and str(files[0]) in notes[0] and "is not running" in notes[0]
    assert state["all"] == [] and state["chunks"] == state["vectors"] == state["index"] == 0
    # A rerun ingests everything once.
    done = subprocess.run(
        [str(LONGQA), "ingest", str(tmp_path / "docs")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "2 ingested" in done.stdout + done.stderr, done.stderr[-3000:]
    state, _ = _read(home, db_url, "the river of omega number 0")
    assert state["ready"] == sorted(map(str, files)) and state["chunks"] == state["vectors"] == state["index"]


def test_truncated_or_deleted_cache_is_rebuilt_with_one_line(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The FAISS cache under test; on PostgreSQL with pgvector, 'auto' would search there instead.
    monkeypatch.setenv("LONGQA_RETRIEVAL__VECTOR_SEARCH", "faiss")
    home = tmp_path / "home"
    files = _files(tmp_path / "docs", "sigma", 2)
    env = _env(home, db_url)
    done = subprocess.run(
        [str(LONGQA), "ingest", str(tmp_path / "docs")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cache = home / "index.faiss"
    good, _ = _read(home, db_url, "the lantern of sigma number 1")  # builds the cache
    assert cache.exists() and good["index"] == good["chunks"]
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    state, err = _read(home, db_url, "the lantern of sigma number 1")
    lines = [line for line in err.splitlines() if "index cache" in line]
    assert len(lines) == 1 and "was unreadable (truncated" in lines[0], err[-2000:]
    assert lines[0].endswith(f"rebuilt from the database: {good['chunks']} vectors")
    assert (
        "Traceback" not in err and state["hits"] == good["hits"] and state["ready"] == sorted(map(str, files))
    )
    cache.unlink()
    state, err = _read(home, db_url, "the lantern of sigma number 1")
    lines = [line for line in err.splitlines() if "index cache" in line]
    assert len(lines) == 1 and "was missing; rebuilt from the database" in lines[0]
    assert state["hits"] == good["hits"] and any("sigma-1" in h for h in state["hits"])
    state, err = _read(home, db_url, "the lantern of sigma number 1")  # current now: silent
    assert "index cache" not in err and state["hits"] == good["hits"]


@pytest.mark.slow  # 200 s for both databases on the busy 2-core machine
def test_cli_ask_and_ingest_with_a_missing_or_truncated_cache(
    db_url: str, tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`longqa ask` rebuilds a missing or truncated index.faiss with one line and answers;
    `longqa ingest` with a truncated cache works and prints no traceback."""
    monkeypatch.setenv("LONGQA_RETRIEVAL__VECTOR_SEARCH", "faiss")  # the FAISS cache, also on pgvector
    home = tmp_path / "home"
    files = _files(tmp_path / "docs", "kappa", 2)
    more = _files(tmp_path / "more", "lambda", 1)
    env = _env(
        home,
        db_url,
        LONGQA_LOG="WARNING",
        LONGQA_MODEL_CACHE=str(model_cache),
        LONGQA_LLM__MODEL="smollm2-135m",
        LONGQA_LLM__MAX_TOKENS="16",
        LONGQA_LLM__THREADS="2",
    )

    def longqa(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(LONGQA), *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
        return done

    longqa("ingest", str(tmp_path / "docs"))
    cache = home / "index.faiss"
    assert not cache.exists()  # ingest never writes the cache
    asked = longqa("ask", "What does the copper of kappa number 2 keep?", "--mode", "rag", "--json")
    notes = [line for line in asked.stderr.splitlines() if "index cache" in line]
    assert len(notes) == 1 and "was missing; rebuilt from the database" in notes[0], asked.stderr
    assert json.loads(asked.stdout)["mode"] == "rag" and cache.exists()
    n = int(notes[0].rsplit(": ", 1)[1].split()[0])
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 3])
    ingested = longqa("ingest", str(more[0]))
    assert "1 ingested, 0 unchanged, 0 failed" in ingested.stderr and "index cache" not in ingested.stderr
    asked = longqa("ask", "What does the river of lambda number 0 keep?", "--mode", "rag", "--json")
    notes = [line for line in asked.stderr.splitlines() if "index cache" in line]
    assert len(notes) == 1 and "was unreadable (truncated" in notes[0], asked.stderr
    assert int(notes[0].rsplit(": ", 1)[1].split()[0]) > n  # the new document's vectors are in
    answer = json.loads(asked.stdout)
    assert answer["mode"] == "rag" and answer["reason"]
    docs = json.loads(longqa("docs", "--json").stdout)
    assert sorted(d["source_path"] for d in docs) == sorted(map(str, files + more))
