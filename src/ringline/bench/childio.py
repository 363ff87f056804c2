"""The harness's child processes: reading what they write, and stopping them.

Owns: :class:`LineReader`, the next line with a given prefix from a child's
stdout pipe within a deadline; :func:`file_tail` / :func:`log_tail`, the
end of the temporary file (or the log file, by path) a child's stderr (or
output) goes to; :func:`stop_child`, ending a child (end of file on its
stdin, then SIGTERM, then SIGKILL, each after a grace period) and reaping
it; and :func:`free_port`, a loopback port for a child server to listen on.
Used by the benchmark servers (:mod:`.procs`), the client workers and
backing servers (:mod:`.clients_procs`), nginx (:mod:`.nginx`), the
port-printing helpers (:mod:`.portchild`) and the test suite's servers
(tests/support); each turns a timeout or an end of file into its own error.

Lifecycle: a LineReader lives as long as the pipe it reads; the bytes after
the last newline it has seen are kept for its next call.

Invariants: a wait never outlasts its deadline (``time.monotonic()``);
lines are decoded with ``errors="replace"`` (a child's garbage never raises)
and stripped; a line without the prefix is skipped, never an error;
:func:`stop_child` always returns with the child reaped.
"""
from __future__ import annotations

import os
import selectors
import socket
import subprocess
import time
from typing import IO, Optional


class LineReader:
    """Whole lines from one pipe (a file descriptor), read as they arrive."""

    __slots__ = ("fd", "_buf")

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = b""

    def next_with(self, prefix: str, deadline: float) -> str | None:
        """The next line that starts with ``prefix`` (decoded, stripped);
        None at end of file; TimeoutError once ``deadline`` has passed."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    raw, self._buf = self._buf.split(b"\n", 1)
                    line = raw.decode(errors="replace").strip()
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not sel.select(left):
                    continue
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self._buf += chunk


def file_tail(f: IO[bytes] | None, limit: int) -> str:
    """The last ``limit`` bytes of ``f``, decoded and stripped ("" when there
    is no file or it cannot be read)."""
    if f is None:
        return ""
    try:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read().decode(errors="replace").strip()
    except (OSError, ValueError):
        return ""


def log_tail(path: str, limit: int = 2000) -> str:
    """The last ``limit`` characters of the log file at ``path`` ("(no log)"
    when it cannot be read): for the error of a server that did not start."""
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return "(no log)"


def _exited(proc: "subprocess.Popen", seconds: float) -> bool:
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def stop_child(proc: "Optional[subprocess.Popen]", grace: float = 5.0,
               eof_wait: Optional[float] = None) -> None:
    """End the child ``proc`` and reap it (nothing when it is None).

    With ``eof_wait`` (seconds), first close its stdin -- the cue of a child
    that serves until end of file -- and give it that long to exit; then,
    when ``grace`` > 0, SIGTERM and up to ``grace`` seconds; then SIGKILL.
    A child that has ended already is only reaped (its stdin still closed
    when ``eof_wait`` is given)."""
    if proc is None:
        return
    if eof_wait is not None and proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:         # BrokenPipeError: it ended already
            pass
        if _exited(proc, eof_wait):
            return
    if proc.poll() is None and grace > 0:
        proc.terminate()
        if _exited(proc, grace):
            return
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to (at return time)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
