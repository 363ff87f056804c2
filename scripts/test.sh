#!/usr/bin/env bash
# Set up a virtualenv with ringline and its test dependencies, then run the
# whole test suite (conformance runner included) once per backend:
#   pass 1: RINGLINE_BACKEND=io_uring (fails loudly where io_uring is missing)
#   pass 2: RINGLINE_BACKEND=poll     (the epoll fallback)
# RINGLINE_TEST_BACKENDS="poll" (or "io_uring") runs one pass only.
# Extra arguments go to pytest on every pass.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test,bench]'
status=0
for backend in ${RINGLINE_TEST_BACKENDS:-io_uring poll}; do
    echo "=== ringline test pass: RINGLINE_BACKEND=$backend ==="
    RINGLINE_BACKEND=$backend "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" \
        || status=$?
done
exit $status
