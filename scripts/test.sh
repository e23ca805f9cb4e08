#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): install everything the tests
# need, then run the whole suite against real PostgreSQL and real daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
PYTHON=${PYTHON:-python3}
# Any exit but 0 fails, 5 (no tests collected) included; a skipped test fails the run too
# unless VMYARD_ALLOW_SKIPS=1 (tests/conftest.py), which CI=true overrides.
exec "$PYTHON" -m pytest "$@"
