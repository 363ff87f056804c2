"""Benchmark workload ``native``: echo on ringline's native connection API.

Owns: the ``native`` and ``native-task`` workloads (registered on import).
The server is what a ``ringline.Handler`` runs in a worker: a multishot
accept (``ringline._conn.api.Listener``) turning each accepted fd into a
``Conn`` whose task echoes with ``on_data`` + ``send_nowait`` (the callback
runs straight from each receive completion; the task only waits for EOF).
Workload ``native-task`` is the same echo written as a ``with_data`` loop,
which resumes the task for every message. One process,
pinned like every other server of the harness, so the numbers compare with
the Protocol echo of the other loops. Runs only on ringline's loops.

Lifecycle: ``start`` opens the Listener on the harness's socket; every
accepted connection gets its own task, which closes its Conn when the peer
ends; the returned server's ``close`` stops accepting.

Invariants: the echo sends back exactly the bytes received, in order, and
consumes every byte it is shown; a connection error ends that connection's
task only.
"""
from __future__ import annotations

import asyncio
import socket

from .servers import Workload, register_workload


def _echo_fn(conn):
    send = conn.send_nowait

    def echo(view) -> int:
        send(bytes(view))
        return len(view)
    return echo


async def _echo(conn) -> None:
    try:
        await conn.on_data(_echo_fn(conn))
    except ConnectionError:
        pass
    finally:
        conn.close()


async def _echo_task(conn) -> None:
    echo = _echo_fn(conn)
    try:
        while await conn.with_data(echo):
            pass
    except ConnectionError:
        pass
    finally:
        conn.close()


class _NativeServer:
    def __init__(self, loop, sock: socket.socket, handler) -> None:
        from ringline._conn import api as _native
        self._loop = loop
        self._handler = handler
        self._family = sock.family
        self._tasks: set = set()
        self._adopt = _native.adopt_fd
        self._listener = _native.Listener(loop, sock, self._on_fd)

    def _on_fd(self, fd: int) -> None:
        conn = self._adopt(self._loop, fd, self._family)
        task = self._loop.create_task(self._handler(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self._listener.close()


async def _start_native(sock: socket.socket):
    return _NativeServer(asyncio.get_running_loop(), sock, _echo)


async def _start_native_task(sock: socket.socket):
    return _NativeServer(asyncio.get_running_loop(), sock, _echo_task)


register_workload(Workload("native", "echo", _start_native,
                           "echo, ringline native API (Conn.on_data + send_nowait)",
                           loops=("ringline", "ringline-poll")))
register_workload(Workload("native-task", "echo", _start_native_task,
                           "echo, ringline native API as a task loop (Conn.with_data + "
                           "send_nowait)",
                           loops=("ringline", "ringline-poll")))
