"""Types: `mypy --strict` passes on examples/typed_usage.py (the public API:
Conn, connect, serve/launch, Config, Handler, the Redis and memcached
clients), and the names a program uses have real types rather than Any
(the native module's stubs, the lazily exported names)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "typed_usage.py")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REVEAL = """
import ringline
reveal_type(ringline.serve)
reveal_type(ringline.launch)
reveal_type(ringline.Config)
reveal_type(ringline.Handler.on_accept)
reveal_type(ringline.Conn.on_data)
reveal_type(ringline.Conn.send)
reveal_type(ringline.connect)
reveal_type(ringline.ChainResult)
reveal_type(ringline.sleep)
"""


def _mypy(tmp_path, *args):
    argv = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
            "--cache-dir", str(tmp_path / "mypy-cache"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=500, cwd=ROOT)


def test_typed_example_passes_mypy_strict(tmp_path):
    proc = _mypy(tmp_path, EXAMPLE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_public_names_have_real_types(tmp_path):
    path = tmp_path / "reveal.py"
    path.write_text(REVEAL)
    proc = _mypy(tmp_path, str(path))
    revealed = [line.split("Revealed type is ", 1)[1]
                for line in proc.stdout.splitlines() if "Revealed type is" in line]
    assert len(revealed) == REVEAL.count("reveal_type"), proc.stdout + proc.stderr
    for line in revealed:
        assert line.strip('"') != "Any", proc.stdout
    serve, launch, config, on_accept, on_data, send, connect, chain, sleep = revealed
    assert ("ringline._runtime.handler.Handler" in serve
            and "ringline._runtime.config.Config" in serve)
    assert "ringline._runtime.launch.Runtime" in launch
    assert "max_connections: int | None" in config.replace("Union[int, None]", "int | None")
    assert "ringline._core.Conn" in on_accept
    assert "memoryview" in on_data and "_ReadWait" in on_data
    assert "Future[int]" in send
    assert "ringline._core.Conn" in connect
    assert "bytes_sent: int" in chain
    assert "seconds: float" in sleep


def test_typed_example_runs():
    proc = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "b'hello, ringline'"
