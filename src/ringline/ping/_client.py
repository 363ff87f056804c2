"""The client side of the PING/PONG protocol: `PingClient` and `connect()`
(the I/O glue over a ringline Conn; the protocol itself is `_proto`).

Owns: a Conn, the reader task and the FIFO of pending pings (entries
``[remaining, t0, future]``).

Lifecycle: `connect()` opens a Conn and starts a reader task. `ping()`
queues ``PING\r\n`` with `conn.send_nowait` (pings from concurrent tasks
share one send per loop iteration) and appends an entry to the FIFO; the
reader checks and counts ``PONG`` lines (`_proto.count_pongs`) and resolves
entries in order (`_proto.settle`) with the round-trip time measured when the
reply was parsed. `ping_many(n)` sends n pings in one write and resolves once
all n answers arrived. A reply other than ``PONG``, EOF or `close()` fails
the connection: every pending ping raises, nothing hangs.

Invariants: after a failure the FIFO is empty and every later ping raises
ConnectionClosed at once; the ping whose reply broke the stream gets the
ProtocolError itself, the others a ConnectionClosed caused by it.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Deque, List, Optional, Tuple, Union

from .. import _errors
from .._util.addr import parse_address
from ._proto import PING, ProtocolError, count_pongs, settle

__all__ = ["connect", "PingClient"]


class PingClient:
    """A PING/PONG client on one connection (see `connect`)."""

    def __init__(self, conn: Any, address: Any = None) -> None:
        self._conn = conn
        self._send = conn.send_nowait
        self._loop = asyncio.get_running_loop()
        self._pending: Deque[List[Any]] = deque()   # [remaining, t0, future]
        self._error: Optional[BaseException] = None
        self.address = address
        self._reader: Optional[asyncio.Task] = None
        self._reader = self._loop.create_task(self._read_loop())

    @property
    def closed(self) -> bool:
        return self._error is not None

    def _check(self) -> None:
        if self._error is not None:
            err = _errors.ConnectionClosed(f"ping connection to {self.address} is closed: "
                                           f"{self._error}")
            err.__cause__ = self._error
            raise err

    async def ping(self) -> float:
        """One round trip; returns its duration in seconds."""
        self._check()
        fut = self._loop.create_future()
        t0 = time.perf_counter()
        self._send(PING)
        self._pending.append([1, t0, fut])
        return await fut

    async def ping_many(self, n: int) -> float:
        """Send `n` pings in one write and wait for the `n` PONGs; returns the
        seconds from the write to the last answer."""
        if n < 1:
            raise ValueError(f"ping_many(n) needs n >= 1, got {n}")
        self._check()
        fut = self._loop.create_future()
        t0 = time.perf_counter()
        self._send(PING * n)
        self._pending.append([n, t0, fut])
        return await fut

    async def _read_loop(self) -> None:
        try:
            while True:
                if await self._conn.with_data(self._on_data) == 0:
                    raise _errors.ConnectionClosed("the ping server closed the connection")
        except asyncio.CancelledError:
            self._fail(_errors.ConnectionClosed("ping reader cancelled"))
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure ends the connection
            self._fail(exc)

    def _on_data(self, view: memoryview) -> int:
        n = count_pongs(bytes(view))
        if n == 0:
            return 0
        settle(self._pending, n, time.perf_counter())
        return 6 * n

    def _fail(self, exc: BaseException) -> None:
        if self._error is not None:
            return
        self._error = exc
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
        try:
            if isinstance(exc, ProtocolError):
                self._conn.abort()
            else:
                self._conn.close()
        except Exception:  # noqa: BLE001 - already closed
            pass
        pending, self._pending = self._pending, deque()
        first = isinstance(exc, ProtocolError)
        for _, _, fut in pending:
            if fut.done():
                continue
            if first:
                fut.set_exception(exc)
                first = False
            else:
                err = _errors.ConnectionClosed(f"ping connection to {self.address} closed: "
                                               f"{exc}")
                err.__cause__ = exc
                fut.set_exception(err)

    async def close(self) -> None:
        """Close the connection; pending pings raise ConnectionClosed."""
        self._fail(_errors.ConnectionClosed("ping client closed"))
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            await asyncio.wait([reader])

    async def __aenter__(self) -> "PingClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def connect(host: Union[str, Tuple[str, int]] = "127.0.0.1", port: Optional[int] = None,
                  *, timeout: Optional[float] = None) -> PingClient:
    """Connect to a PING/PONG server; needs a running ringline loop.
    `host` may be ``"host:port"`` or ``(host, port)``."""
    from .._conn import api as _native
    addr = parse_address(host) if port is None else (str(host), int(port))
    conn = await _native.connect(addr, timeout=timeout)
    return PingClient(conn, addr)
