"""Ingest of one folder: a single process against Ray with 1 and 2 worker nodes (chunks/s).

Each setup ingests the same folder into a fresh data directory (SQLite) and is timed end to end
as a user sees it: the `longqa ingest` command, its model loading included (the embedder in the
process for a local ingest; in every worker, plus Ray's connection, for a Ray ingest). The Ray
cluster is started here on 127.0.0.1 (a head node and, for 2 workers, a second node; 1 CPU
each, like the test in tests/test_ray_cluster.py) and stopped afterwards; its start is not
timed. Run it under the CPU lock on a shared machine:

    flock /work/cpu.lock .venv/bin/python benchmarks/ray_ingest.py \
        ../shared/data/pdf ../shared/data/transcripts \
        --json ray_ingest.json
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nodes(address: str) -> int:
    r = subprocess.run([str(BIN / "ray"), "status", "--address", address], capture_output=True, text=True)
    return len(re.findall(r"^\s*1 node_", r.stdout, flags=re.M)) if r.returncode == 0 else 0


class Cluster:
    """A local Ray cluster of ``nodes`` nodes with 1 CPU each, each its own 'ray start --block'."""

    def __init__(self, nodes: int) -> None:
        self.root = tempfile.mkdtemp(prefix="lqrayb")
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        common = ["--num-cpus", "1", "--object-store-memory", "100000000", "--disable-usage-stats", "--block"]
        head = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard=false"]
        for k in range(nodes):
            args = head if k == 0 else ["--address", self.address, "--node-ip-address", "127.0.0.1"]
            cmd = [str(BIN / "ray"), "start", *args, *common, "--temp-dir", f"{self.root}/n{k}"]
            log = open(f"{self.root}/n{k}.log", "wb")  # noqa: SIM115 - the process keeps it
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
            deadline = time.monotonic() + 180
            while _nodes(self.address) < k + 1:
                if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                    raise RuntimeError(f"Ray node {k} did not start; see {self.root}/n{k}.log")
                time.sleep(1)

    def stop(self) -> None:
        for p in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _chunks(home: Path) -> tuple[int, int]:
    con = sqlite3.connect(home / "longqa.db")
    try:
        docs = con.execute("SELECT COUNT(*) FROM documents WHERE status = 'ready'").fetchone()[0]
        chunks = con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)
    finally:
        con.close()


def run(folders: list[str], ray: str | None, workdir: Path, name: str) -> dict[str, object]:
    home = workdir / name
    env = {**os.environ, "LONGQA_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(BIN / "longqa"), "ingest", *folders] + (["--ray", ray] if ray else [])
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed: {r.stderr[-2000:]}")
    docs, chunks = _chunks(home)
    out = {
        "setup": name,
        "seconds": round(seconds, 1),
        "documents": docs,
        "chunks": chunks,
        "chunks_per_s": round(chunks / seconds, 1),
        "summary": r.stderr.strip().splitlines()[-1],
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--setups", default="local,ray1,ray2", help="any of local, ray1, ray2")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lqbench"))
    results = {"load_start": os.getloadavg()[0], "cpus": os.cpu_count(), "runs": []}
    try:
        for setup in args.setups.split(","):
            if setup == "local":
                results["runs"].append(run(args.folders, None, workdir, setup))  # type: ignore[union-attr]
                continue
            cluster = Cluster(int(setup.removeprefix("ray")))
            try:
                results["runs"].append(run(args.folders, cluster.address, workdir, setup))  # type: ignore[union-attr]
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
