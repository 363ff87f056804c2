"""Benchmark workload ``uvicorn``: a framework server users actually run.

uvicorn with its httptools protocol serving a plain-text ASGI hello world,
on whichever loop the server process created: the same as
``uvicorn app:app --http httptools --loop module:callable`` (uvicorn takes a
custom loop factory that way), but started in-process on the harness's own
listening socket, so the server is pinned and its CPU accounted like every
other workload.  The generator drives it in HTTP mode (keep-alive GET, the
response framed by Content-Length, status 200 checked).

Lifecycle: ``start(sock)`` runs uvicorn's ``Server.serve`` on the socket as a
task (config load, startup, then uvicorn's main loop with its once-a-second
Date header refresh) and returns once uvicorn says it started; the returned
handle asks it to exit.  uvicorn is imported inside ``start``
only, so listing workloads never needs it.

Invariants: uvicorn serves a duplicate of the harness's socket (the
original stays with the server process for its ready line); ``start`` never
returns before uvicorn is serving, and raises if uvicorn stops first; every
request gets the same fixed response.
"""
from __future__ import annotations

import asyncio
import os
import socket

from .servers import HTTP_BODY, Workload, register_workload

_HEADERS = [(b"content-type", b"text/plain"),
            (b"content-length", str(len(HTTP_BODY)).encode())]


async def hello_app(scope, receive, send) -> None:
    """The ASGI hello world: 200, text/plain, ``Hello, World!``."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": HTTP_BODY})


class _UvicornServer:
    def __init__(self, server, task: asyncio.Task) -> None:
        self._server = server
        self._task = task

    def close(self) -> None:
        self._server.should_exit = True


async def _start_uvicorn(sock: socket.socket):
    import uvicorn

    # uvicorn binding its own socket goes through create_server(host, port),
    # whose sockets carry IPPROTO_TCP, and asyncio's transports then set
    # TCP_NODELAY on every accepted connection; they skip that for a socket
    # made with proto 0 (uvicorn's two writes per response would then wait
    # out the client's delayed ACK on asyncio).  Re-wrapping the descriptor
    # (a duplicate: the server process keeps the original for its ready
    # line) reads the real protocol back from the kernel.
    sock = socket.socket(fileno=os.dup(sock.fileno()))
    config = uvicorn.Config(hello_app, http="httptools", lifespan="off",
                            access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    # uvicorn's own serve(): load, start on our socket, then its main loop
    # (the once-a-second Date header refresh) until should_exit
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started serving")
        await asyncio.sleep(0.005)
    return _UvicornServer(server, task)


register_workload(Workload("uvicorn", "http", _start_uvicorn,
                           "uvicorn (httptools) serving an ASGI hello world",
                           sized=False))
