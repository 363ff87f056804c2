"""Backend choice and report: which I/O backend a ringline loop uses, why,
and what the kernel granted it (setup flags, features, opcodes).

Owns: the choice made when a loop is created -- io_uring when the kernel
grants a ring with everything ringline needs, otherwise the poll backend
(epoll, `_c/polldrv.h`), logging the reason once per process at INFO on the
"ringline" logger; `RINGLINE_BACKEND=io_uring|poll` or `backend=` force a
choice (forcing io_uring where it is unavailable raises BackendUnavailable,
naming the reason) -- the names of io_uring setup flags and opcodes, and the
cached report of `backend()`.

Test hooks, read at loop creation:
  RINGLINE_FAKE_URING_ERRNO=ENOSYS|EPERM|<number>  io_uring_setup fails so
  RINGLINE_FAKE_URING_DISABLED=1|2  as if /proc/sys/kernel/io_uring_disabled
      held that value for this (unprivileged) process: setup fails with EPERM

Lifecycle: ``setup_backend`` runs once per new loop, before any operation;
a loop keeps its backend until it closes.  ``_cache`` holds ``backend()``'s
answer for a loop not yet created, one entry per setting of the RINGLINE_*
variables above.

Invariants: a refused io_uring ring never fails an automatic choice (the
loop falls back to the poll backend, and each distinct reason is logged
once per process); a forced io_uring never falls back silently; the fake ring is reachable only
by argument, never from the environment.
"""
from __future__ import annotations

import errno
import logging
import os
import platform
from dataclasses import dataclass, field

logger = logging.getLogger("ringline")

BACKEND_NAMES = ("io_uring", "poll")
DISABLED_SYSCTL = "/proc/sys/kernel/io_uring_disabled"


class BackendUnavailable(OSError):
    """The io_uring backend was asked for but cannot be used here; the
    message names the reason (ENOSYS, EPERM, io_uring_disabled, a missing
    opcode, an old kernel)."""

SETUP_FLAGS = {
    1 << 0: "IOPOLL", 1 << 1: "SQPOLL", 1 << 2: "SQ_AFF", 1 << 3: "CQSIZE",
    1 << 4: "CLAMP", 1 << 5: "ATTACH_WQ", 1 << 6: "R_DISABLED",
    1 << 7: "SUBMIT_ALL", 1 << 8: "COOP_TASKRUN", 1 << 9: "TASKRUN_FLAG",
    1 << 10: "SQE128", 1 << 11: "CQE32", 1 << 12: "SINGLE_ISSUER",
    1 << 13: "DEFER_TASKRUN",
}

OPCODES = [
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD",
    "POLL_REMOVE", "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT",
    "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT",
    "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX", "READ", "WRITE",
    "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL", "SPLICE",
    "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT",
    "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT", "MSG_RING", "FSETXATTR",
    "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC",
    "SENDMSG_ZC", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE",
    "FUTEX_WAITV", "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN",
    "RECV_ZC", "EPOLL_WAIT", "READV_FIXED", "WRITEV_FIXED", "PIPE",
]

OPCODE_NUMBERS = {name: i for i, name in enumerate(OPCODES)}


def opcode_name(op: int) -> str:
    return OPCODES[op] if 0 <= op < len(OPCODES) else f"OP_{op}"


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in sorted(SETUP_FLAGS.items()) if flags & bit]


@dataclass(frozen=True)
class BackendInfo:
    """What `ringline.backend()` reports."""
    name: str
    kernel: str
    setup_flags: tuple[str, ...] = ()
    features: int = 0
    opcodes: tuple[str, ...] = ()
    reason: str = ""
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key):  # dict-style access for convenience
        return getattr(self, key)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "kernel": self.kernel,
            "setup_flags": list(self.setup_flags), "features": self.features,
            "opcodes": list(self.opcodes), "reason": self.reason,
        }


def _io_uring_disabled() -> tuple[int, bool]:
    """(value of io_uring_disabled, whether it comes from the test hook)."""
    fake = os.environ.get("RINGLINE_FAKE_URING_DISABLED", "").strip()
    if fake:
        try:
            return int(fake), True
        except ValueError:
            raise ValueError(f"RINGLINE_FAKE_URING_DISABLED must be 0, 1 or 2, not {fake!r}")
    try:
        with open(DISABLED_SYSCTL) as f:
            return int(f.read().strip() or 0), False
    except (OSError, ValueError):
        return 0, False          # no such sysctl before Linux 6.6


def _fake_errno() -> int:
    value = os.environ.get("RINGLINE_FAKE_URING_ERRNO", "").strip()
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    code = getattr(errno, value.upper(), None)
    if not isinstance(code, int):
        raise ValueError(f"RINGLINE_FAKE_URING_ERRNO: unknown errno name {value!r}")
    return code


def _describe_failure(exc: OSError, disabled: int) -> str:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    if code == errno.EPERM and disabled:
        what = ("io_uring is disabled for everyone" if disabled >= 2 else
                "io_uring is restricted to members of kernel.io_uring_group")
        return f"io_uring_disabled={disabled} ({DISABLED_SYSCTL}): {what}; io_uring_setup: {name}"
    if code == errno.ENOSYS:
        return "io_uring_setup: ENOSYS (the kernel has no io_uring, or it is compiled out)"
    if code == errno.EPERM:
        return "io_uring_setup: EPERM (not permitted: seccomp filter or container policy)"
    text = exc.strerror or str(exc)
    if "io_uring_setup failed" in text:
        return f"io_uring_setup: {name} ({os.strerror(code)})"
    return text


_announced: set = set()


def _announce_fallback(reason: str) -> None:
    if reason not in _announced:
        _announced.add(reason)
        logger.info("io_uring unavailable, using the poll backend (epoll): %s", reason)


def setup_backend(loop, requested, entries: int, mask_flags: int) -> tuple[str, str]:
    """Give a new loop its driver. Returns (backend name, reason)."""
    source = f"backend={requested!r}"
    if requested is None:
        requested = os.environ.get("RINGLINE_BACKEND", "").strip() or None
        source = f"RINGLINE_BACKEND={requested}"
    want = (requested or "auto").lower().replace("-", "_")
    if want in ("epoll", "fallback"):
        want = "poll"
    if want in ("uring", "iouring"):
        want = "io_uring"
    if want == "_fake" and source.startswith("backend="):
        # the fake-completion test harness (no kernel); only by argument
        loop._setup_fake_ring(entries)
        return "io_uring", "fake ring: completions posted by the test harness"
    if want not in ("auto", "io_uring", "poll"):
        raise ValueError(f"unknown ringline backend {requested!r} ({source}): "
                         f"expected 'io_uring', 'poll' or 'auto'")
    if want == "poll":
        loop._setup_poll(entries)
        return "poll", f"forced by {source}"
    disabled, disabled_faked = _io_uring_disabled()
    fake = _fake_errno()
    if disabled_faked and disabled > 0 and not fake:
        fake = errno.EPERM
    try:
        loop._setup_ring(entries, mask_flags, fake)
    except OSError as exc:
        reason = _describe_failure(exc, disabled)
        if want == "io_uring":
            raise BackendUnavailable(
                exc.errno, f"the io_uring backend is unavailable ({source}): {reason}") from None
        _announce_fallback(reason)
        loop._setup_poll(entries)
        return "poll", reason
    if want == "io_uring":
        return "io_uring", f"io_uring_setup succeeded (forced by {source})"
    return "io_uring", "io_uring_setup succeeded"


def info_from_loop(loop) -> BackendInfo:
    ri = loop._ring_info()
    name = getattr(loop, "_backend_name", ri.get("backend", "io_uring"))
    return BackendInfo(
        name=name,
        kernel=platform.release(),
        setup_flags=tuple(flag_names(ri["setup_flags"])),
        features=ri["features"],
        opcodes=tuple(opcode_name(op) for op in ri["opcodes"]),
        reason=getattr(loop, "_backend_reason", ""),
        extra={"sq_entries": ri["sq_entries"], "cq_entries": ri["cq_entries"]},
    )


_cache: dict = {}


def _env_key():
    return tuple(os.environ.get(k) for k in (
        "RINGLINE_BACKEND", "RINGLINE_FAKE_URING_ERRNO", "RINGLINE_FAKE_URING_DISABLED"))
