"""The wire protocol between ringline's processes, and fd passing over it.

Owns: the message kinds, their fixed-size payloads, the exit codes a worker
reports through its status, and `send_fds` / `recv_fds` (SCM_RIGHTS).

Channels (each one SOCK_SEQPACKET socketpair, so one send is one message):

  supervisor <-> worker (one per worker):
    supervisor -> worker  MSG_FDS + fds (SCM_RIGHTS), MSG_STOP + STOP(grace)
    worker -> supervisor  MSG_READY, MSG_ERROR + text (could not start),
                          MSG_TAKEN + TAKEN(count): fds taken so far,
                          cumulative, so a lost ack is harmless
  launching process <-> supervisor (under launch(), one link):
    caller -> supervisor  MSG_STOP + STOP(grace), MSG_QUERY
    supervisor -> caller  MSG_STATE + pickled state, MSG_ERROR + pickled
                          exception (the start failed)
  EOF on a channel tells each side that the other is gone.

Lifecycle: stateless; the channels themselves are created and closed by
the supervisor, the worker and launch(), which use these functions.

Invariants: at most MAX_FDS_PER_MSG fds travel in one message (SCM_MAX_FD);
every fd `recv_fds` returns is owned by the caller (received close-on-exec
when the caller passes MSG_CMSG_CLOEXEC); a truncated fd array is never
half-read.
"""
from __future__ import annotations

import array
import signal
import socket
import struct
from typing import List, Optional, Sequence, Tuple

__all__ = ["MSG_FDS", "MSG_STOP", "MSG_READY", "MSG_ERROR", "MSG_TAKEN", "MSG_QUERY",
           "MSG_STATE", "STOP", "TAKEN", "MAX_FDS_PER_MSG", "EXIT_OK",
           "EXIT_START_FAILED", "EXIT_STARTUP", "EXIT_CRASH", "send_fds", "recv_fds",
           "describe_exit"]

MSG_FDS, MSG_STOP = b"F", b"S"
MSG_READY, MSG_ERROR, MSG_TAKEN = b"R", b"E", b"A"
MSG_QUERY, MSG_STATE = b"Q", b"T"     # launching process <-> supervisor
STOP = struct.Struct("=d")            # grace in seconds; < 0: Config.grace
TAKEN = struct.Struct("=Q")
MAX_FDS_PER_MSG = 253                 # SCM_MAX_FD

EXIT_OK = 0            # finished: after a shutdown, or a client-only worker done
EXIT_START_FAILED = 1  # client-only on_start raised (not respawned); a launched supervisor failed
EXIT_STARTUP = 3       # the worker could not start (told the parent why)
EXIT_CRASH = 70        # an unexpected error in the worker's own code

_FD_ARRAY = array.array("i")


def send_fds(sock: socket.socket, msg: bytes, fds: Sequence[int], flags: int) -> int:
    # socket.send_fds() ignores its flags argument before Python 3.12
    return sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", fds))], flags)


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int,
             flags: int) -> Tuple[bytes, List[int]]:
    # socket.recv_fds() ignores its flags argument before Python 3.12
    msg, ancdata, _mflags, _addr = sock.recvmsg(
        bufsize, socket.CMSG_LEN(maxfds * _FD_ARRAY.itemsize), flags)
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, fds.tolist()


def describe_exit(code: Optional[int]) -> str:
    """How a process ended, from its exit code (negative: killed by a signal)."""
    if code is None:
        return "exited (status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
