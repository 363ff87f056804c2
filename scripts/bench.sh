#!/usr/bin/env bash
# Set up a virtualenv with ringline, uvloop and the benchmark dependencies, then
# run the side-by-side benchmark (quick preset unless arguments are given).
# Without arguments, the field comparison follows (scripts/bench-field.sh: every
# other loop on PyPI that installs here, on the newest supported Python present;
# FIELD=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test,bench]'
if [ $# -gt 0 ]; then
    exec "$VENV/bin/python" -m ringline.bench "$@"
fi
"$VENV/bin/python" -m ringline.bench --quick
if [ "${FIELD:-1}" != 0 ]; then
    ./scripts/bench-field.sh
fi
