#!/usr/bin/env bash
# Run the test suite with the project's virtualenv (make test installs it first).
# Extra arguments go to pytest, e.g. `make test ARGS="-k filter"`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
exec "$VENV/bin/python" -m pytest "$@"
