#!/usr/bin/env bash
# Set up and run the test suite (the README's test command; .ci/run runs it too).
# Extra arguments go to pytest, e.g. 'bash scripts/test.sh -m slow'.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every extra the tests cover (dev brings eval and llama-index too; named here to be plain).
bash scripts/setup.sh app,asr,eval,llama-index,dev
# espeak-ng makes real speech for the speech-to-text tests (they skip, saying so, without it).
if ! command -v espeak-ng >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
    || echo "could not install espeak-ng: speech tests will be skipped"
fi
# qemu-user runs the engine on an emulated AVX2-only CPU (tests/test_engine.py; it skips without).
if ! command -v qemu-x86_64 >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null) \
    || echo "could not install qemu-user: the emulated-CPU engine test will be skipped"
fi
# Debian's chromium + chromedriver for the app's browser test (tests/e2e; it skips, saying so, without).
if ! { command -v chromium && command -v chromedriver; } >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "could not install chromium: the browser test will be skipped (in CI it fails)"
fi
if [ -z "${LONGQA_TEST_PG_URL:-}" ]; then
  # shellcheck source=/dev/null
  source scripts/postgres.sh || echo "no PostgreSQL: its tests will be skipped (in CI they fail)"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest "$@"
