"""A description of the machine a benchmark ran on.

Owns: :func:`machine_info`, a JSON-ready dict with the CPU model, the number
of CPUs (online and usable by this process), the kernel, the Python build,
the versions of the packages that matter (loops, parser, plotting, Cython),
the C compiler, the git commit of the ringline tree, whether io_uring is
allowed, and the load average, so that
a result can be judged later (a busy machine makes every number suspect).

Lifecycle: read once at the start of a run (the load average again at its
end); nothing is cached.

Invariants: a fact that cannot be read (no /proc file, no compiler, no git
checkout, a package not installed) is recorded as None, "unknown" or an
empty list, never an exception; nothing here changes the machine.
"""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

_PACKAGES = ("ringline", "uvloop", "httptools", "matplotlib", "Cython")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _compiler_version() -> str | None:
    from .loadgen import compiler

    try:
        out = subprocess.run([compiler(), "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0] if out else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def ringline_commit() -> str | None:
    """The git commit of the ringline tree being benchmarked (``+dirty`` if edited)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "src"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info() -> dict:
    return {
        "cpu_model": _cpu_model(),
        "cpus_online": os.cpu_count(),
        "cpus_usable": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "packages": package_versions(),
        "ringline_commit": ringline_commit(),
        "compiler": _compiler_version(),
        "io_uring_disabled": _read("/proc/sys/kernel/io_uring_disabled"),
        "load_average_start": load_average(),
    }
