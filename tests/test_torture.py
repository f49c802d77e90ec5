"""A short run of the concurrency torture (benchmarks/torture.py) on SQLite and PostgreSQL:
writer and reader processes on one data dir, SIGKILLed at random moments; the run fails on
any lost document or broken invariant. The measured runs are in docs/design.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_short_torture_loses_nothing(db: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.torture", "--db", db, "--rounds", "2", "--round-seconds", "60"]
    cmd += ["--writers", "2", "--readers", "1", "--files", "5", "--kill-every", "10", "--minutes", "8"]
    cmd += ["--work", str(tmp_path), "--seed", str(os.getpid() % 100_000), "--out", str(tmp_path / "r.json")]
    if db == "postgresql":
        url = os.environ.get("LONGQA_TEST_PG_URL")
        if not url:
            pytest.skip("no PostgreSQL: set LONGQA_TEST_PG_URL (scripts/postgres.sh does)")
        cmd += ["--pg-url", url]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    total = result["total"]
    assert total["rounds"] == 2 and total["kills"] >= 4
    assert total["losses"] == 0 and total["violations"] == 0
    assert total["docs_checked"] > 0 and total["cited_chunks_checked"] > 0
    ops = {k for r in result["rounds"] for k in r["writer_ops"]}
    assert "ingest-done:ingested" in ops  # the writers got work done between the kills
