#!/usr/bin/env bash
# System packages the README commands need on a fresh Debian machine: a C
# compiler and Python headers (the extension, the benchmark's C programs),
# venv, strace (the syscall-economy tests), and the real servers the client
# tests run against (redis-server, redis-cli, memcached, nginx and nghttpd
# for the HTTP client's tests, ngtcp2-server for the HTTP/3 tests). Skipped
# when all are present.
set -euo pipefail
need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
{ command -v nghttpd >/dev/null 2>&1 || [ -x /usr/sbin/nghttpd ]; } || need+=(nghttp2-server)
{ command -v gtlsserver >/dev/null 2>&1 || [ -x /usr/sbin/gtlsserver ]; } || need+=(ngtcp2-server)
if ! { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }; then
    # nginx-light (Debian 12) has what the tests use (ssl, http2, gzip); later
    # releases ship only nginx
    if apt-cache show nginx-light >/dev/null 2>&1; then need+=(nginx-light); else need+=(nginx); fi
fi
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
