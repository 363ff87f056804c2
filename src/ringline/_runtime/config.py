"""Configuration of ringline's thread-per-core runtime.

Owns: `Config`, the frozen set of knobs `ringline.serve` / `ringline.launch`
run with, the CPU topology helpers that choose the default worker count
and the core each worker is pinned to, and the sizing of RLIMIT_NOFILE
(`fit_nofile` derives the fd-counted bounds, `ensure_nofile` raises the
limit to fit them).

Lifecycle: a Config is validated once, when it is constructed (every bad
value raises `ConfigError` naming the field and its allowed range); it never
changes afterwards (`dataclasses.replace(cfg, field=...)` builds a new,
revalidated one). The parent process reads it before forking; every worker
sees the same object.

Invariants: every bound the runtime applies to peer-driven growth (receive
accumulator, send queue, connections per worker, acceptor queue depth) is a
field here, with a finite default. The two bounds counted in file
descriptors (`max_connections`, `acceptor_queue`) default to None: `fit_nofile`
derives them, when the runtime starts, from the RLIMIT_NOFILE this process
can raise its soft limit to, shared among the workers, so that the defaults
start on any machine; an explicit value is kept, and the runtime fails at
start naming RLIMIT_NOFILE when it cannot fit.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import resource
from typing import Any, List, Optional, Sequence, Tuple

from .._errors import ConfigError
from .._util.addr import has_port, split_host_port

__all__ = ["Config", "physical_core_cpus", "default_workers", "fit_nofile",
           "nofile_reachable", "nofile_slack", "ensure_nofile"]

log = logging.getLogger("ringline.runtime")

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
    if isinstance(value, str) and has_port(value):
        try:
            value = split_host_port(value, default_host="", min_port=0)
        except ValueError:
            pass    # out of range: refused below, naming the field
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
    (more are refused: accepted and closed at once, counted; None: derived
    at start from RLIMIT_NOFILE, see `fit_nofile`); backlog: listen
    backlog; distribution: "reuseport" (one SO_REUSEPORT listener per worker,
    the kernel spreads connections) or "acceptor" (the parent accepts and
    hands fds to workers round-robin); acceptor_queue: fds handed to a worker
    and not yet taken, above which it is skipped (None: derived with
    max_connections); recv_accumulator_cap,
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
    max_connections: Optional[int] = None
    backlog: int = 1024
    distribution: str = "reuseport"
    acceptor_queue: Optional[int] = None
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
        if self.max_connections is not None:
            _int_in("max_connections", self.max_connections, 1, 1 << 24)
        _int_in("backlog", self.backlog, 1, 65535)
        if self.distribution not in ("reuseport", "acceptor"):
            raise _bad("distribution", "'reuseport' or 'acceptor'", self.distribution)
        if self.acceptor_queue is not None:
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


# ---------------------------------------------------------------------------
# file descriptors: the budget RLIMIT_NOFILE allows

MAX_CONNECTIONS_DEFAULT_CAP = 16384   # the derived default never exceeds this
ACCEPTOR_QUEUE_DEFAULT_CAP = 1024


def nofile_slack(workers: int, udp_addresses: int) -> int:
    """File descriptors the runtime itself needs besides connections:
    listeners, channels, rings, pidfds, UDP sockets and some for the
    handler's own files."""
    return 64 + 16 * workers + 4 * workers * udp_addresses


def _nr_open() -> int:
    value = _read_int("/proc/sys/fs/nr_open")
    return value if value is not None and value > 0 else 1 << 20


def nofile_reachable() -> Tuple[int, int, int]:
    """(reachable, soft, hard): the RLIMIT_NOFILE soft limit this process can
    raise itself to without privileges (the hard limit; the kernel's
    fs.nr_open when the hard limit is unlimited), and the current limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reachable = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY:
        reachable = max(reachable, soft)
    return reachable, soft, hard


def fit_nofile(cfg: Config) -> Config:
    """`cfg` with max_connections and acceptor_queue derived where they are
    None: the reachable RLIMIT_NOFILE minus the runtime's slack, divided
    among the workers (as if they shared one descriptor table, which keeps
    the budget valid when workers are threads and for the fds in flight
    between processes), capped at MAX_CONNECTIONS_DEFAULT_CAP per worker.
    The choice is logged at INFO. Raises OSError(EMFILE) naming the limit
    when not even one connection per worker fits."""
    if cfg.max_connections is not None and cfg.acceptor_queue is not None:
        return cfg
    reachable, soft, hard = nofile_reachable()
    slack = nofile_slack(cfg.workers, len(cfg.udp_bind))
    max_connections = cfg.max_connections
    if max_connections is None:
        max_connections = min(MAX_CONNECTIONS_DEFAULT_CAP,
                              (reachable - slack) // cfg.workers)
        if max_connections < 1:
            raise OSError(
                errno.EMFILE,
                f"RLIMIT_NOFILE is too low: it can be raised to {reachable} file "
                f"descriptors (soft {soft}, hard {_limit_text(hard)}), which leaves "
                f"no connection for workers={cfg.workers} after the {slack} the "
                f"runtime needs; raise the hard limit (ulimit -Hn, systemd "
                f"LimitNOFILE=) or lower Config.workers")
        log.info("ringline: max_connections=%d per worker (x %d workers), derived "
                 "from RLIMIT_NOFILE (reachable %d: soft %s, hard %s); set "
                 "Config.max_connections to choose", max_connections, cfg.workers,
                 reachable, _limit_text(soft), _limit_text(hard))
    acceptor_queue = cfg.acceptor_queue
    if acceptor_queue is None:
        acceptor_queue = min(ACCEPTOR_QUEUE_DEFAULT_CAP, max_connections)
    return dataclasses.replace(cfg, max_connections=max_connections,
                               acceptor_queue=acceptor_queue)


def _limit_text(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def ensure_nofile(cfg: Config) -> None:
    """Raise RLIMIT_NOFILE to fit every worker's connections, or fail naming
    the limit. cfg has been through fit_nofile (no None bounds)."""
    assert cfg.max_connections is not None
    slack = nofile_slack(cfg.workers, len(cfg.udp_bind))
    need = cfg.max_connections * cfg.workers + slack
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft == inf or soft >= need:
        return
    try:
        if hard == inf or hard >= need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        return
    except (ValueError, OSError) as exc:
        reason = exc
    raise OSError(
        errno.EMFILE,
        f"RLIMIT_NOFILE is too low: this Config needs {need} file descriptors "
        f"(max_connections={cfg.max_connections} x workers={cfg.workers} + {slack} "
        f"for the runtime) but the soft limit is {soft} and the hard limit "
        f"{'unlimited' if hard == inf else hard} cannot be raised ({reason}); raise "
        f"the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower "
        f"Config.max_connections / Config.workers (or leave max_connections "
        f"unset: it is then derived from the limit)")
