"""``longqa ingest --ray`` and ``longqa batch --ray`` on a real local Ray cluster: a head node and a
second node, each a separate ``ray start`` (1 CPU each, own temporary folder), driven by the real
CLI in subprocesses. The store's content must equal a local ingest's; a driver SIGKILLed mid-run
is resumed by rerunning it, with nothing duplicated."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'longqa[ray]')")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LONGQA = BIN / "longqa"
RAY = BIN / "ray"
SAMPLES = ROOT / "app" / "samples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nodes(address: str) -> int:
    r = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True, timeout=60)
    return len(re.findall(r"^\s*1 node_", r.stdout, flags=re.M)) if r.returncode == 0 else 0


def _kill_group(proc: subprocess.Popen[bytes], root: str) -> None:
    """Stop one 'ray start --block' and everything it started (same process group), then any
    process still naming our temporary folder (Ray's own workers), each by its pid."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if root.encode() in cmd and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A Ray cluster on 127.0.0.1: a head and one more node, 1 CPU and 80 MB of object store each."""
    root = tempfile.mkdtemp(prefix="lqray")  # short: Ray's socket paths live under it
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", "1", "--object-store-memory", "80000000", "--disable-usage-stats", "--block"]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, args in (
            (
                "head",
                [
                    "--head",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--include-dashboard=false",
                ],
            ),
            ("worker", ["--address", address, "--node-ip-address", "127.0.0.1"]),
        ):
            log = open(Path(root) / f"{name}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            cmd = [str(RAY), "start", *args, *common, "--temp-dir", str(Path(root) / name)]
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            want = len(procs)
            deadline = time.monotonic() + 120
            while _nodes(address) < want:
                dead = [p for p in procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    text = (Path(root) / f"{name}.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"the Ray {name} node did not start:\n{text}")
                time.sleep(1)
        yield address
    finally:
        for p in reversed(procs):
            _kill_group(p, root)
        for log in logs:
            log.close()
        shutil.rmtree(root, ignore_errors=True)


def _env(home: Path, model_cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LONGQA_HOME": str(home),
        "LONGQA_MODEL_CACHE": str(model_cache),
        "LONGQA_EMBEDDING__DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _longqa(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LONGQA), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _store(home: Path) -> dict[str, tuple[str, int, int, int]]:
    """doc_id -> (status, n_chunks, chunk rows, chunk rows with a vector), read from the database."""
    con = sqlite3.connect(home / "longqa.db")
    try:
        rows = con.execute(
            "SELECT d.doc_id, d.status, d.n_chunks, COUNT(c.vec_id), COUNT(c.vector) "
            "FROM documents d LEFT JOIN chunks c ON c.doc_id = d.doc_id GROUP BY d.doc_id"
        ).fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
    finally:
        con.close()


def _ready(home: Path) -> int:
    if not (home / "longqa.db").exists():
        return 0
    with contextlib.suppress(sqlite3.Error):
        return sum(1 for s in _store(home).values() if s[0] == "ready")
    return 0


def _library(tmp_path: Path) -> Path:
    """The bundled samples, twelve text files of about 6 KB each, and one empty file."""
    lib = tmp_path / "library"
    shutil.copytree(SAMPLES, lib / "samples")
    for i in range(12):
        lines = [
            f"Report {i}, section {k}: the harbour of town {i} shipped {k * 37 + i} crates of tea."
            for k in range(80)
        ]
        (lib / f"report-{i:02d}.txt").write_text("\n".join(lines) + "\n")
    (lib / "empty.txt").write_text("")
    return lib


def test_ingest_on_ray_equals_local_and_resumes_after_sigkill(
    cluster: str, tmp_path: Path, model_cache: Path
) -> None:
    lib = _library(tmp_path)
    local_home, ray_home = tmp_path / "local", tmp_path / "ray"

    local = _longqa(["ingest", str(lib)], _env(local_home, model_cache))
    assert local.returncode == 0, local.stderr
    reference = _store(local_home)
    assert len(reference) == 14  # 12 reports, the PDF and the story; the empty file fails

    # A driver killed outright while the workers are busy: no cleanup at all.
    env = _env(ray_home, model_cache)
    cmd = [str(LONGQA), "ingest", str(lib), "--ray", cluster]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _ready(ray_home) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the ingest ended before it could be killed: {proc.communicate()[1]}"
    proc.kill()
    proc.communicate(timeout=60)
    before = _ready(ray_home)
    assert 2 <= before < 14

    rerun = _longqa(["ingest", str(lib), "--ray", cluster], env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{14 - before} ingested, {before} unchanged, 1 failed" in rerun.stderr, rerun.stderr
    assert "empty.txt" in rerun.stderr and "failed" in rerun.stderr
    # Exactly the local ingest's documents and chunks, each chunk with its vector, nothing twice.
    assert _store(ray_home) == reference
    assert all(s == ("ready", n, n, n) for s in reference.values() for n in [s[1]])

    again = _longqa(["ingest", str(lib), "--ray", cluster], env)
    assert again.returncode == 0, again.stderr
    assert "0 ingested, 14 unchanged, 1 failed, 0 chunks added" in again.stderr, again.stderr
    assert _store(ray_home) == reference


def test_batch_on_ray_answers_every_row(cluster: str, tmp_path: Path, model_cache: Path) -> None:
    from app.batch.files import read_table
    from app.batch.run import BASE_COLUMNS

    env = {
        **_env(tmp_path / "home", model_cache),
        "LONGQA_LLM__MODEL": "smollm2-135m",
        "LONGQA_LLM__MAX_TOKENS": "16",
        "LONGQA_LLM__THREADS": "1",
        "LONGQA_RETRIEVAL__TOP_K": "1",
    }
    q = tmp_path / "q.csv"
    q.write_text("question\nWhen did Microsoft launch Word for MS-DOS?\nWho found the gold bug?\n")
    out = tmp_path / "results.jsonl"
    cmd = ["batch", "--docs", str(SAMPLES), "--questions", str(q), "--out", str(out), "--mode", "rag"]
    r = _longqa([*cmd, "--ray", cluster], env)
    assert r.returncode == 0, r.stderr
    assert "4 rows: 4 answered now" in r.stderr and "2 in flight at peak, 2 allowed" in r.stderr, r.stderr
    rows = read_table(out)
    assert list(rows[0]) == list(BASE_COLUMNS)  # the local batch's table, column for column
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert {r["doc"] for r in rows} == {"gold-bug-opening.txt", "word-processor-history.pdf"}
    assert all(r["answer"] and r["mode"] == "rag" and r["model"] == "smollm2-135m" for r in rows)
    assert all(isinstance(r["citations"], list) for r in rows)
    journal = [json.loads(x) for x in (tmp_path / "results.jsonl.journal.jsonl").read_text().splitlines()]
    assert len(journal) == 4

    again = _longqa([*cmd, "--ray", cluster], env)
    assert again.returncode == 0, again.stderr
    assert "0 answered now; 4 already done" in again.stderr, again.stderr
    assert [json.loads(x)["answered_at"] for x in out.read_text().splitlines()] == [
        r["answered_at"] for r in rows
    ]


def test_unreachable_cluster_is_one_line(tmp_path: Path, model_cache: Path) -> None:
    r = _longqa(["ingest", str(SAMPLES), "--ray", f"127.0.0.1:{_free_port()}"], _env(tmp_path, model_cache))
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:"), (
        r.stderr
    )
    assert "ray start --head" in lines[0]
