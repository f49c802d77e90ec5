#!/usr/bin/env bash
# Set up and run the test suite (the README's test command; .ci/run runs it too).
# Extra arguments go to pytest, e.g. 'bash scripts/test.sh -m slow'.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh app,dev
if [ -z "${LONGQA_TEST_PG_URL:-}" ]; then
  # shellcheck source=/dev/null
  source scripts/postgres.sh || echo "no PostgreSQL: its tests will be skipped (in CI they fail)"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest "$@"
