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


def test_the_torture_check_flags_what_it_must() -> None:
    """The reader check itself (no processes): a citation is fine only when the writers' logs
    show the document ready throughout the question."""
    from benchmarks.torture import Harness

    def op(kind: str, t0: float, end: float, result: str | None, seen: list[list[str]] | None = None) -> dict:  # type: ignore[type-arg]
        return {"kind": kind, "doc_id": "d", "t0": t0, "end": end, "result": result, "seen": seen or []}

    ingested = op("ingest", 0, 1, "ingested")
    check = Harness.ready_during
    assert check([ingested], 2, 3, True) == "ok"
    assert check([ingested], 0.5, 3, True) == "ambiguous"  # the ingest overlaps the question
    assert check([], 2, 3, True) == "no ingest of it had started"
    assert check([ingested, op("delete", 1.5, 1.8, "deleted")], 2, 3, False) == "it had been deleted"
    assert check([ingested, op("delete", 1.5, 1.8, None)], 2, 3, False) == "ambiguous"  # killed
    killed = op("ingest", 0, 1, None)
    assert check([killed, op("ingest", 4, 5, "unchanged", [["d", "ready"]])], 2, 3, True) == "ok"
    assert "killed before committing" in check([killed, op("ingest", 4, 5, "ingested")], 2, 3, True)
    assert check([killed], 2, 3, True) == "ok"
    assert check([killed], 2, 3, False) == "its ingest was killed and never committed"
