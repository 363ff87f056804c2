"""A helper process that listens on a free port and says which.

Owns: :class:`PortChild`, one child process started with stdin and stdout
pipes that prints the port it listens on as its first stdout line and
serves until its stdin reaches end of file (the bench's fake Momento server,
grpcio echo server and HTTP/3 server, and the test suite's peer servers,
run this way); and the child's end of that: :func:`serve_until_eof` (say
the port, wait for the end of stdin) and :func:`serve_streams` (an asyncio
stream server doing both).

Lifecycle: ``PortChild(argv, what=...)`` starts the process and reads the
port (a child that ends, or prints no port, is killed and reported as
``RuntimeError`` naming ``what``); ``close()`` closes its stdin, waits up to
10 s, then kills it; idempotent.

Invariants: the port is read before the constructor returns, so the child
is listening by then; ``close()`` always reaps the process and closes both
pipes.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any, Awaitable, Callable, List, Mapping, Optional

from .childio import stop_child

__all__ = ["PortChild", "serve_streams", "serve_until_eof"]


class PortChild:
    """The child process: ``.proc``, ``.port``, ``.target``; ``close()``."""

    def __init__(self, argv: List[str], what: str = "the child server",
                 env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=None if env is None else dict(env), cwd=cwd)
        line = self.proc.stdout.readline().strip()     # type: ignore[union-attr]
        if not line.isdigit():
            self.proc.kill()
            self.close()
            raise RuntimeError(f"{what} did not start")
        self.port = int(line)
        self.target = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        stop_child(self.proc, grace=0, eof_wait=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def serve_until_eof(port: int) -> None:
    """The child's end: say ``port`` (its first stdout line), then return
    once stdin reaches end of file (the parent's ``close()``); the caller
    stops its server after. Runs on any asyncio loop."""
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_streams(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                         Awaitable[Any]]) -> None:
    """A child serving ``handle`` per connection (an asyncio stream server
    on a free 127.0.0.1 port) until its stdin ends."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        await serve_until_eof(server.sockets[0].getsockname()[1])
