"""Configuration of ringline's thread-per-core runtime.

Owns: `Config`, the frozen set of knobs `ringline.serve` / `ringline.launch`
run with, and the CPU topology helpers that choose the default worker count
and the core each worker is pinned to.

Lifecycle: a Config is validated once, when it is constructed (every bad
value raises `ConfigError` naming the field and its allowed range); it never
changes afterwards (`dataclasses.replace(cfg, field=...)` builds a new,
revalidated one). The parent process reads it before forking; every worker
sees the same object.

Invariants: every bound the runtime applies to peer-driven growth (receive
accumulator, send queue, connections per worker, acceptor queue depth) is a
field here, with a finite default.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, List, Optional, Sequence, Tuple

from ._errors import ConfigError

__all__ = ["Config", "physical_core_cpus", "default_workers"]

_SYS_CPU = "/sys/devices/system/cpu"


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def physical_core_cpus() -> List[int]:
    """One CPU number per physical core this process may run on (the lowest
    numbered hardware thread of each core), in CPU order. Falls back to every
    allowed CPU when the topology files are missing."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    seen = set()
    cpus = []
    for cpu in allowed:
        base = f"{_SYS_CPU}/cpu{cpu}/topology"
        core = _read_int(f"{base}/core_id")
        package = _read_int(f"{base}/physical_package_id")
        key: Tuple[Any, ...] = ("cpu", cpu) if core is None else (package, core)
        if key in seen:
            continue
        seen.add(key)
        cpus.append(cpu)
    return cpus or [0]


def default_workers() -> int:
    """The number of physical cores available to this process."""
    return len(physical_core_cpus())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _bad(field: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"Config.{field} must be {allowed}, got {value!r}")


def _int_in(field: str, value: Any, lo: int, hi: int, unit: str = "") -> None:
    if not _is_int(value) or not lo <= value <= hi:
        raise _bad(field, f"an int in {lo}..{hi}{unit}", value)


def _pow2_in(field: str, value: Any, lo: int, hi: int) -> None:
    if not _is_int(value) or not lo <= value <= hi or not _is_pow2(value):
        raise _bad(field, f"a power of two in {lo}..{hi}", value)


def _seconds(field: str, value: Any, lo: float, hi: float, lo_open: bool) -> float:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value > lo if lo_open else value >= lo)
          and value <= hi)
    if not ok:
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise _bad(field, f"a number of seconds {bound} and <= {hi}", value)
    return float(value)


def _udp_address(value: Any) -> Tuple[str, int]:
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        if sep and port.isdigit():
            value = (host.strip("[]"), int(port))
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and isinstance(value[0], str) and _is_int(value[1])
            and 0 <= value[1] <= 65535):
        return (value[0], value[1])
    raise _bad("udp_bind", "a list of (host, port) addresses with port in 0..65535",
               value)


_MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Config:
    """Knobs of the thread-per-core runtime (see docs/runtime.md).

    workers: worker processes (default: physical cores available);
    pin_to_core: pin each worker to one core; sq_entries: submission queue
    size of each worker's ring; recv_buffers x recv_buffer_size: each
    worker's provided buffer ring; max_connections: connections per worker
    (more are refused: accepted and closed at once, counted); backlog: listen
    backlog; distribution: "reuseport" (one SO_REUSEPORT listener per worker,
    the kernel spreads connections) or "acceptor" (the parent accepts and
    hands fds to workers round-robin); acceptor_queue: fds handed to a worker
    and not yet taken, above which it is skipped; recv_accumulator_cap,
    max_send_queue, send_zc_threshold: per-connection bounds (bytes);
    timer_slots: timers per worker; tick: call on_tick at least this often
    (seconds) when idle, or None; grace: default shutdown grace (seconds);
    udp_bind: (host, port) addresses every worker serves UDP on.
    """

    workers: int = dataclasses.field(default_factory=default_workers)
    pin_to_core: bool = True
    sq_entries: int = 4096
    recv_buffers: int = 256
    recv_buffer_size: int = 32768
    max_connections: int = 16384
    backlog: int = 1024
    distribution: str = "reuseport"
    acceptor_queue: int = 1024
    recv_accumulator_cap: int = 16 * _MIB
    max_send_queue: int = 8 * _MIB
    send_zc_threshold: int = 65536
    timer_slots: int = 65536
    tick: Optional[float] = None
    grace: float = 5.0
    udp_bind: Sequence[Tuple[str, int]] = ()

    def __post_init__(self) -> None:
        _int_in("workers", self.workers, 1, 4096)
        if not isinstance(self.pin_to_core, bool):
            raise _bad("pin_to_core", "True or False", self.pin_to_core)
        _pow2_in("sq_entries", self.sq_entries, 8, 32768)
        _pow2_in("recv_buffers", self.recv_buffers, 1, 32768)
        _int_in("recv_buffer_size", self.recv_buffer_size, 64, 16 * _MIB, " bytes")
        _int_in("max_connections", self.max_connections, 1, 1 << 24)
        _int_in("backlog", self.backlog, 1, 65535)
        if self.distribution not in ("reuseport", "acceptor"):
            raise _bad("distribution", "'reuseport' or 'acceptor'", self.distribution)
        _int_in("acceptor_queue", self.acceptor_queue, 1, 1 << 20)
        _int_in("recv_accumulator_cap", self.recv_accumulator_cap, 1024, 1 << 32,
                " bytes")
        _int_in("max_send_queue", self.max_send_queue, 1024, 1 << 40, " bytes")
        _int_in("send_zc_threshold", self.send_zc_threshold, 1, 1 << 30, " bytes")
        _int_in("timer_slots", self.timer_slots, 1, 1 << 24)
        if self.tick is not None:
            object.__setattr__(self, "tick",
                               _seconds("tick", self.tick, 0.0, 3600.0, True))
        object.__setattr__(self, "grace",
                           _seconds("grace", self.grace, 0.0, 86400.0, False))
        udp = self.udp_bind
        if isinstance(udp, (str, bytes)) or not hasattr(udp, "__iter__"):
            raise _bad("udp_bind", "a list of (host, port) addresses", udp)
        object.__setattr__(self, "udp_bind", tuple(_udp_address(a) for a in udp))

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
