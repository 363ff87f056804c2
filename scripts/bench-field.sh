#!/usr/bin/env bash
# The field comparison: ringline beside every other asyncio loop on PyPI that
# installs here (zloop, zloop's io_uring backend, talyn, blazio, rloop,
# uringcore), asyncio, uvloop and the C reference servers, on the newest
# supported Python present (most of the field has wheels for 3.12+ or 3.13+
# only).  Creates .venv-field-<version> with ringline and the bench extra
# (which installs each field loop where its wheels exist), then runs
# `ringline bench --quick --loops field` on protocol, streams, HTTP, UDP,
# uvicorn and the native echo (results in bench-results/field/).
# Arguments replace the default options; FIELD_PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

newest_python() {
    # every python3.N on PATH or under pyenv, N >= 11; the highest version wins
    local best="" best_minor=-1 cand minor
    for cand in $(compgen -c python3. 2>/dev/null | sort -u) \
                "$HOME"/.pyenv/versions/*/bin/python3.[0-9]*; do
        case "$cand" in *-config|*m) continue ;; esac
        command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ] || continue
        minor=$("$cand" -c 'import sys; print(sys.version_info[1] if sys.version_info[0] == 3 else -1)' 2>/dev/null) || continue
        if [ "$minor" -ge 11 ] && [ "$minor" -gt "$best_minor" ]; then
            best=$(command -v "$cand" || echo "$cand"); best_minor=$minor
        fi
    done
    [ -n "$best" ] && echo "$best"
}

PY=${FIELD_PYTHON:-$(newest_python || true)}
if [ -z "$PY" ]; then
    echo "bench-field: no Python 3.11+ found" >&2
    exit 1
fi
VERSION=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=${FIELD_VENV:-.venv-field-$VERSION}
echo "=== field comparison on Python $VERSION ($PY), venv $VENV ===" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test,bench]'
if [ $# -eq 0 ]; then
    set -- --quick --loops field --workloads protocol,streams,http,udp,uvicorn,native \
        --no-clients --out bench-results/field
fi
exec "$VENV/bin/python" -m ringline.bench "$@"
