#!/usr/bin/env bash
# Set up a virtualenv with ringline, uvloop and the benchmark dependencies, then
# run the side-by-side benchmark (quick preset unless arguments are given).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test,bench]'
if [ $# -eq 0 ]; then set -- --quick; fi
exec "$VENV/bin/python" -m ringline.bench "$@"
