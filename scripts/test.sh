#!/usr/bin/env bash
# The whole test suite (conformance runner included) on every supported
# CPython present on this machine, one virtualenv per version:
#
#   3.11  $PYTHON (default python3): required -- the run fails if it is
#         missing or older than 3.11; venv .venv
#   3.12  python3.12 on PATH or under ${PYENV_ROOT:-~/.pyenv}/versions/3.12.*;
#         venv .venv312 (skipped, and said so, when absent)
#   3.13  likewise; venv .venv313
#
# Backends: both (io_uring, then poll) on the newest interpreter found,
# io_uring only on the others (the poll backend is
# the same code on every Python).  RINGLINE_TEST_BACKENDS="poll" (or
# "io_uring poll") forces the backends of every pass;
# RINGLINE_TEST_PYTHONS="3.11 3.13" restricts the versions.
# Extra arguments go to pytest on every pass.  Prints which interpreters were
# found and a summary line per pass; exits non-zero if any pass failed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
PY=${PYTHON:-python3}
PYENV_DIR=${PYENV_ROOT:-$HOME/.pyenv}/versions

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "test.sh: the default interpreter '$PY' is missing (ringline needs 3.11+)" >&2
    exit 2
fi
DEFAULT_VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "test.sh: the default interpreter '$PY' is $DEFAULT_VER; ringline needs 3.11+" >&2
    exit 2
fi

find_python() {    # find_python 3.12 -> path of an interpreter of that version, or nothing
    local ver=$1 cand
    for cand in "$(command -v "python$ver" 2>/dev/null || true)" \
                $(ls -d "$PYENV_DIR/$ver".*/bin/"python$ver" 2>/dev/null | sort -V -r); do
        [ -n "$cand" ] && [ -x "$cand" ] || continue
        if [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$ver" ]; then
            echo "$cand"
            return
        fi
    done
}

# version -> interpreter, in version order
declare -A PYS
PYS[$DEFAULT_VER]=$("$PY" -c 'import sys; print(sys.executable)')   # not a pyenv shim
for ver in 3.11 3.12 3.13; do
    [ -n "${PYS[$ver]:-}" ] && continue
    p=$(find_python "$ver")
    [ -n "$p" ] && PYS[$ver]=$p
done
VERSIONS=$(printf '%s\n' "${!PYS[@]}" | sort -V)
if [ -n "${RINGLINE_TEST_PYTHONS:-}" ]; then
    VERSIONS=$(printf '%s\n' $VERSIONS | grep -x -F -f <(printf '%s\n' $RINGLINE_TEST_PYTHONS) || true)
fi
if [ -z "$VERSIONS" ]; then
    echo "test.sh: no supported interpreter selected (RINGLINE_TEST_PYTHONS='${RINGLINE_TEST_PYTHONS:-}')" >&2
    exit 2
fi
NEWEST=$(printf '%s\n' $VERSIONS | tail -n 1)

echo "=== ringline test.sh: CPython interpreters"
for ver in 3.11 3.12 3.13; do
    if [ -n "${PYS[$ver]:-}" ]; then
        echo "    $ver: found ${PYS[$ver]}"
    else
        echo "    $ver: NOT FOUND (not tested)"
    fi
done
[ -z "${PYS[3.11]:-}" ] && [ "$DEFAULT_VER" != "3.11" ] && \
    echo "    (default interpreter is $DEFAULT_VER)"

venv_for() {
    if [ "$1" = "$DEFAULT_VER" ]; then echo "${VENV:-.venv}"; else echo ".venv${1/./}"; fi
}

status=0
summary=()
for ver in $VERSIONS; do
    venv=$(venv_for "$ver")
    t0=$SECONDS
    echo "=== ringline: setting up $venv for CPython $ver (${PYS[$ver]})"
    [ -x "$venv/bin/python" ] || "${PYS[$ver]}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip 'setuptools>=77' wheel Cython
    "$venv/bin/python" -m pip install -q -e '.[test,bench]'
    if [ -n "${RINGLINE_TEST_BACKENDS:-}" ]; then
        backends=$RINGLINE_TEST_BACKENDS
    elif [ "$ver" = "$NEWEST" ]; then
        backends="io_uring poll"
    else
        backends="io_uring"
    fi
    for backend in $backends; do
        echo "=== ringline test pass: CPython $ver, RINGLINE_BACKEND=$backend"
        t1=$SECONDS
        rc=0
        # the slow packaging/typing tests build the whole package: once per
        # run (the first pass) is enough to keep CI within 45 minutes
        slow=()
        [ -n "${slow_done:-}" ] && slow=(-m "not slow")
        RINGLINE_BACKEND=$backend "$venv/bin/python" -m pytest -q -p no:cacheprovider "${slow[@]}" "$@" \
            || rc=$?
        slow_done=1
        [ $rc -ne 0 ] && status=$rc
        summary+=("CPython $ver $backend: $([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $((SECONDS - t1)) s")
    done
    echo "=== CPython $ver done in $((SECONDS - t0)) s"
done

echo "=== ringline test.sh summary"
for line in "${summary[@]}"; do echo "    $line"; done
for ver in 3.11 3.12 3.13; do
    [ -z "${PYS[$ver]:-}" ] && echo "    CPython $ver: not found, not tested"
done
exit $status
