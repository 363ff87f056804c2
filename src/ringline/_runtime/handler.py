"""The user-facing side of ringline's runtime: `Handler` and `WorkerContext`.

Owns: the base class a server (or client-only program) subclasses, with the
callbacks the worker calls, and the `WorkerContext` a handler reads about
its own worker (id, cpu, pid, loop, clock, stopping flag, counters).

Lifecycle: one Handler instance per worker process, built by
`create_for_worker(worker_id)` when the worker starts; `self.worker` is set
before `on_start`; `on_accept(conn)` runs as one task per connection, and the
connection is closed when it returns or raises; `on_udp_bind(udp)` runs once
per UDP socket and is cancelled when the worker stops; `on_tick` runs once per
loop iteration (and at least every `Config.tick` seconds when set).

Invariants: a handler's exception is logged by the worker and ends only its
own connection (or UDP socket, or start task); a WorkerContext reports the
counters of its own worker only (nothing is shared between workers).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Optional

from .._conn import api

if TYPE_CHECKING:
    from .._core import Conn
    from .._conn.udp import UdpSocket
    from .worker import Worker

__all__ = ["Handler", "WorkerContext"]


class Handler:
    """Base class of a ringline server (or client-only program).

    One instance per worker (`create_for_worker`); `on_accept(conn)` runs as
    a task per connection and the connection is closed when it returns or
    raises. `self.worker` is the worker's `WorkerContext` (set before
    `on_start`).
    """

    worker: "WorkerContext"

    @classmethod
    def create_for_worker(cls, worker_id: int) -> "Handler":
        """Build this worker's handler (runs in the worker process)."""
        return cls()

    async def on_start(self) -> None:
        """Runs once per worker as a task, next to accepting. With bind=None
        (and no UDP) it is the worker's whole program."""

    async def on_accept(self, conn: "Conn") -> None:
        """Serve one connection (a ringline.Conn)."""
        raise NotImplementedError(f"{type(self).__name__}.on_accept() is not defined")

    def on_tick(self, ctx: "WorkerContext") -> None:
        """Called once per loop iteration (and at least every Config.tick
        seconds when set). Must not block."""

    async def on_udp_bind(self, udp: "UdpSocket") -> None:
        """Serve one UDP socket (a ringline.UdpSocket), one per
        Config.udp_bind address; cancelled when the worker stops."""


class WorkerContext:
    """What a worker knows about itself: worker_id, cpu (None when not
    pinned), pid, loop, now() (the loop clock), stopping (True once a
    shutdown began) and stats()."""

    __slots__ = ("worker_id", "cpu", "pid", "loop", "stopping", "_worker")

    def __init__(self, worker: "Worker") -> None:
        self._worker = worker
        self.worker_id: int = worker.worker_id
        self.cpu: Optional[int] = worker.cpu
        self.pid: int = os.getpid()
        self.loop: Any = worker.loop
        self.stopping: bool = False

    def now(self) -> float:
        return self.loop.time()

    def stats(self) -> Dict[str, Any]:
        """Counters of this worker: the runtime's (accepted, refused,
        handler_errors, fds_received) and the native connection table's."""
        w = self._worker
        out: Dict[str, Any] = dict(api.stats(w.loop))
        out.update(worker_id=w.worker_id, accepted=w.accepted, refused=w.refused,
                   handler_errors=w.handler_errors, fds_received=w.fds_received,
                   tasks=len(w.tasks))
        return out

    def __repr__(self) -> str:
        return f"<WorkerContext worker_id={self.worker_id} cpu={self.cpu} pid={self.pid}>"
