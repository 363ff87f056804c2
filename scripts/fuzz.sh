#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol parsers with atheris (libFuzzer).
#   scripts/fuzz.sh [seconds per target, default 600] [extra libFuzzer flags]
# Needs atheris in the venv: .venv/bin/pip install atheris (builds on 3.11).
# Corpora are kept under fuzz-corpus/<target>/ (git-ignored) between runs;
# a crash leaves its input as crash-* in the current directory.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SECONDS_PER=${1:-600}
shift || true
status=0
for target in resp memcache; do
    corpus=fuzz-corpus/$target
    mkdir -p "$corpus"
    echo "=== fuzz_$target: ${SECONDS_PER}s ==="
    "$PY" "tests/fuzz/fuzz_$target.py" -max_total_time="$SECONDS_PER" -max_len=4096 \
        "$@" "$corpus" || status=$?
done
exit $status
