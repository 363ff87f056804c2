#!/usr/bin/env bash
# Set up a virtualenv with ringline and its test dependencies, then run the
# whole test suite (conformance runner included).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test,bench]'
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
