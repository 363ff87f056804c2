"""Backend report: which I/O backend a ringline loop uses and what the kernel
granted it (setup flags, features, opcodes).

Owns: the names of io_uring setup flags and opcodes, and the cached result of
probing the kernel once per process.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

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


def info_from_loop(loop) -> BackendInfo:
    ri = loop._ring_info()
    return BackendInfo(
        name="io_uring",
        kernel=platform.release(),
        setup_flags=tuple(flag_names(ri["setup_flags"])),
        features=ri["features"],
        opcodes=tuple(opcode_name(op) for op in ri["opcodes"]),
        reason="io_uring_setup succeeded",
        extra={"sq_entries": ri["sq_entries"], "cq_entries": ri["cq_entries"]},
    )


_cached: BackendInfo | None = None


def backend() -> BackendInfo:
    global _cached
    if _cached is None:
        from ._loop import Loop
        loop = Loop()
        try:
            _cached = info_from_loop(loop)
        finally:
            loop.close()
    return _cached
