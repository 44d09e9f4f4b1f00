#!/usr/bin/env bash
# `make compose-test`: the compose stack built, started, crashed, scaled and recovered for real, checked over
# its published ports (dev/compose_test.py says what, one PASS/FAIL line per check). Arguments go to the
# Python script: --no-build, --image NAME:TAG, --torch-variant cpu|cuda, --gpu, --skip-bot.
# Without Docker it says SKIP and exits 0; any failed check exits 1. `down -v` runs in every case.
set -euo pipefail
cd "${0%/*}/.."
PY=${PY:-.venv/bin/python}
if ! command -v docker >/dev/null 2>&1; then
  echo "SKIP compose-test: no docker CLI on PATH (install Docker Engine and the Compose v2 plugin)"
  exit 0
fi
exec nice -n "${COMPOSE_TEST_NICE:-0}" "$PY" dev/compose_test.py "$@"
