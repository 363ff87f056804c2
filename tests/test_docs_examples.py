"""Every ```python block of README.md and docs/*.md runs as pasted, each in a
fresh interpreter (so that policies and globals cannot leak between them).

* README.md and docs/api.md, docs/native.md, docs/http.md, docs/grpc.md, docs/http3.md: run here. A README server
  snippet (`ringline.serve(...)`, which blocks) is started in a subprocess
  with its default Config, echoed over 127.0.0.1, stopped with SIGTERM and
  must exit with code 0. Its fixed port (7000) is replaced by a free one, so
  that a busy port 7000 on the machine cannot fail the test: that is the
  only change made to any snippet. A block whose first line is
  `# Python 3.12+` runs on 3.12 and later only.
* docs/runtime.md, docs/tasks.md, docs/redis.md, docs/memcache.md: run by
  tests/runtime/test_runtime.py, runtime/test_tasks.py,
  clients/test_redis_client.py and clients/test_memcache_client_docs.py (they
  need the runtime's helpers or a real server); `test_every_doc_with_python_is_run` keeps this map complete.
* The README's install commands (a wheel from `python -m build`, installed
  into a fresh virtualenv) are exercised by tests/test_packaging.py.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from support import free_port

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DOCS_DIR = os.path.join(ROOT, "docs")
README = os.path.join(ROOT, "README.md")
RUN_HERE = ("api.md", "native.md", "http.md", "grpc.md", "http3.md")
RUN_ELSEWHERE = {"runtime.md": "runtime/test_runtime.py", "tasks.md": "runtime/test_tasks.py",
                 "redis.md": "clients/test_redis_client.py",
                 "memcache.md": "clients/test_memcache_client_docs.py",
                 "kv.md": "kv/test_kv_docs.py", "momento.md": "clients/test_momento.py"}
FIXED_PORT = 7000


def _blocks_of(path):
    with open(path) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def _blocks(names=("api.md",)):
    found = []
    for name in names:
        found += _blocks_of(os.path.join(DOCS_DIR, name))
    return found


def _needs_312(code):
    return code.splitlines()[0].strip() == "# Python 3.12+"


def _run_snippet(code):
    if _needs_312(code) and sys.version_info < (3, 12):
        pytest.skip("asyncio.run(loop_factory=...) is new in Python 3.12")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("code", _blocks(RUN_HERE), ids=lambda c: c.splitlines()[0][:40])
def test_api_doc_example_runs(code):
    _run_snippet(code)


def test_doc_has_examples():
    assert len(_blocks()) >= 8


# ---------------------------------------------------------------------------
# README.md


def _readme_blocks():
    return _blocks_of(README)


def _is_server(code):
    return "ringline.serve(" in code


def _echo_server_roundtrip(code):
    port = free_port()
    assert code.count(str(FIXED_PORT)) == 1, "one fixed port in the server snippet"
    code = code.replace(str(FIXED_PORT), str(port))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the README server never listened"
                time.sleep(0.05)
        with conn:
            for payload in (b"hello", b"x" * 100_000):
                conn.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = conn.recv(65536)
                    assert chunk, "the README server closed the connection"
                    got += chunk
                assert got == payload
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]


@pytest.mark.parametrize("code", _readme_blocks(), ids=lambda c: c.splitlines()[0][:40])
def test_readme_example_runs(code):
    if _is_server(code):
        _echo_server_roundtrip(code)
    else:
        proc = _run_snippet(code)
        assert proc.stdout.strip() == "done"


def test_readme_has_the_quick_starts():
    blocks = _readme_blocks()
    assert any("ringline.run(main())" in b for b in blocks)
    assert any("loop_factory=ringline.new_event_loop" in b and _needs_312(b)
               for b in blocks)
    assert sum(map(_is_server, blocks)) == 1


def test_readme_keeps_the_two_commands():
    # the README's test command is exactly what CI (.ci/run) runs
    text = open(README).read()
    after = text.split("Set up and run the whole test suite", 1)[1]
    readme_cmd = after.split("```sh\n", 1)[1].split("```", 1)[0].strip()
    assert readme_cmd == "./scripts/test.sh"
    ci = os.path.join(os.path.dirname(README), ".ci", "run")
    with open(ci) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    # after `set -euo pipefail` and the cd to the checkout, the one command
    # .ci/run runs is the README's (its arguments passed on)
    assert lines[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."'], lines
    assert lines[2:] == [readme_cmd + ' "$@"'], lines
    assert os.access(ci, os.X_OK)
    assert "```sh\n./scripts/bench.sh\n```" in text


def test_every_doc_with_python_is_run():
    with_python = {name for name in os.listdir(DOCS_DIR)
                   if name.endswith(".md") and _blocks_of(os.path.join(DOCS_DIR, name))}
    assert with_python == set(RUN_HERE) | set(RUN_ELSEWHERE)
    here = os.path.dirname(os.path.abspath(__file__))
    for name, test_file in RUN_ELSEWHERE.items():
        with open(os.path.join(here, test_file)) as f:
            assert name in f.read(), (name, test_file)
