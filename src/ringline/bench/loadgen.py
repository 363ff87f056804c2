"""Building and running the native tools: the load generator and the C echo servers.

Owns: compiling ``csrc/loadgen.c``, ``csrc/echo_server.c`` and
``csrc/uring_echo_server.c`` (the io_uring reference) with the system
C compiler (``$CC``, else ``cc``) into a cache directory keyed by a hash of
the source (with the csrc/ headers it includes: ``loadgen_*.h``, the echo
servers' shared ``echo_common.h``), the compiler and the flags, so that an
edited source or header is rebuilt and an unchanged one never is; and one
call, :func:`run_loadgen`, that runs a generator session and returns its
JSON report plus its own CPU time.

Cache directory: ``$RINGLINE_BENCH_CACHE``, else
``$XDG_CACHE_HOME/ringline-bench``, else ``~/.cache/ringline-bench``.  A build
writes to a temporary name and renames it into place, so concurrent builds
(parallel tests) never see a half-written binary.

Lifecycle: a binary is built on first use and then reused from the cache;
each :func:`run_loadgen` call is one generator process, waited for (and
killed when it outlives its timeout).

Invariants: an edited source, compiler or flag set always gets a fresh
build (the cache key covers all three); a failed build raises
:class:`BuildError` with the compiler's output, a session without a report
(or with an ``error`` in it) :class:`LoadgenError` with the generator's.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

CSRC = Path(__file__).with_name("csrc")
CFLAGS = ("-O2", "-pthread")


class BuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    explicit = os.environ.get("RINGLINE_BENCH_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "ringline-bench"


def compiler() -> str:
    return os.environ.get("CC", "cc")


_LOCAL_INCLUDE = re.compile(rb'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def _translation_unit(source: Path) -> bytes:
    """The bytes of ``source`` and of every header it includes from csrc/
    (``#include "..."``, followed into those headers too), each once: what
    is compiled, so what the build's cache key covers."""
    seen: set = set()
    out = []
    todo = [source]
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        text = path.read_bytes()
        out.append(text)
        todo.extend(CSRC / m.decode() for m in _LOCAL_INCLUDE.findall(text))
    return b"".join(out)


def build(name: str) -> Path:
    """Path to the compiled ``csrc/<name>.c``, compiling it if needed."""
    source = CSRC / f"{name}.c"
    text = _translation_unit(source)
    key = hashlib.sha256(text + compiler().encode() + " ".join(CFLAGS).encode())
    target = cache_dir() / f"{name}-{key.hexdigest()[:16]}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=target.parent)
    os.close(fd)
    cmd = [compiler(), *CFLAGS, "-o", tmp, str(source)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def loadgen_path() -> Path:
    return build("loadgen")


def echo_server_path() -> Path:
    return build("echo_server")


def uring_echo_server_path() -> Path:
    return build("uring_echo_server")


@dataclass
class LoadSpec:
    """One generator session; mirrors loadgen.c's options."""

    mode: str
    port: int
    conns: int
    size: int | None
    duration: float
    warmup: float = 0.0
    host: str = "127.0.0.1"
    cpus: list[int] | None = None
    threads: int | None = None
    verify: bool = False
    requests: int | None = None
    spin: bool = False
    engine: str | None = None  # "uring" | "epoll"; None: uring when allowed
    extra: list[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        argv = ["--host", self.host, "--port", str(self.port), "--mode", self.mode,
                "--conns", str(self.conns), "--duration", f"{self.duration:g}",
                "--warmup", f"{self.warmup:g}"]
        if self.mode != "http":
            argv += ["--size", str(self.size or 64)]
        if self.cpus:
            argv += ["--cpus", ",".join(map(str, self.cpus))]
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.verify:
            argv.append("--verify")
        if self.requests:
            argv += ["--requests", str(self.requests)]
        if self.spin:
            argv.append("--spin")
        if self.engine:
            argv += ["--engine", self.engine]
        return argv + list(self.extra)


class LoadgenError(RuntimeError):
    pass


def run_loadgen(spec: LoadSpec, timeout: float | None = None) -> dict:
    """Run one session; returns loadgen's JSON plus ``client_cpu_s``/``wall_s``.

    Raises :class:`LoadgenError` when the generator fails to run or reports
    an error before any traffic (e.g. connection refused).
    """
    import time

    binary = loadgen_path()
    if timeout is None:
        timeout = spec.warmup + spec.duration + 30.0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen([str(binary), *spec.argv()], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace").strip()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        detail = stderr or f"exit status {proc.returncode}"
        if proc.returncode < 0:
            detail = f"killed by signal {-proc.returncode} (timeout {timeout:g}s?) {stderr}"
        raise LoadgenError(f"loadgen produced no report: {detail}")
    report = json.loads(lines[-1])
    if "error" in report:
        raise LoadgenError(f"loadgen: {report['error']}")
    report["client_cpu_s"] = usage.ru_utime + usage.ru_stime
    report["wall_s"] = wall
    return report
