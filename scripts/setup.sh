#!/usr/bin/env bash
# Create .venv and install longqa with its embedded models.
# Usage: bash scripts/setup.sh [EXTRAS]   (default extras: app,asr,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-app,asr,dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: this takes the CPU build (an unpinned torch may pull a multi-GB CUDA build).
.venv/bin/python -m pip install -q "torch==2.13.0"
# llama-cpp-python compiles from source the first time (about 11 minutes on 2 cores).
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "setup done: $(.venv/bin/longqa --help >/dev/null && echo 'longqa is installed in .venv')"
