"""ringline.ping: a PING/PONG line protocol, client and server side.

Owns: `PingClient` (``await ringline.ping.connect(host, port)``) and
`PingHandler`, a ready-made `ringline.Handler` that answers ``PONG\\r\\n`` to
every ``PING\\r\\n`` line. The protocol is the smallest request/response pair
there is, which makes it the yardstick of the runtime's per-message cost.

Client lifecycle: `connect()` opens a Conn and starts a reader task. `ping()`
queues ``PING\\r\\n`` with `conn.send_nowait` (pings from concurrent tasks
share one send per loop iteration) and appends an entry to a FIFO; the reader
counts ``PONG`` lines and resolves entries in order with the round-trip time
measured when the reply was parsed. `ping_many(n)` sends n pings in one
write and resolves once all n answers arrived. A reply other than ``PONG``,
EOF or `close()` fails the connection: every pending ping raises, nothing
hangs.

Server side: `PingHandler.on_accept` answers each complete ``PING`` line
(``PING`` alone, any case, CRLF or LF) with one ``PONG\\r\\n``, all the
answers to one receive batch in one send; any other line gets
``ERROR unknown command\\r\\n``; a line longer than `max_line` without a
newline closes the connection.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Deque, List, Optional, Tuple, Union

from . import _errors
from ._util.addr import parse_address

__all__ = ["connect", "PingClient", "PingHandler", "ProtocolError"]

_PING = b"PING\r\n"
_PONG = b"PONG\r\n"

try:
    from ._runtime.handler import Handler as _HandlerBase
except ImportError:  # pragma: no cover - the runtime is part of ringline
    _HandlerBase = object  # type: ignore[misc,assignment]


class ProtocolError(ConnectionError):
    """The peer sent something other than PONG lines; the connection is
    closed."""


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
        self._send(_PING)
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
        self._send(_PING * n)
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
        data = bytes(view)
        n = len(data) // 6
        # "PONG\r\n" cannot overlap itself: n occurrences in 6n bytes tile them
        if data.count(_PONG, 0, 6 * n) != n:
            i = 0
            while data[6 * i:6 * i + 6] == _PONG:
                i += 1
            raise ProtocolError(f"expected PONG, got {data[6 * i:6 * i + 40]!r}")
        if not _PONG.startswith(data[6 * n:]):
            raise ProtocolError(f"expected PONG, got {data[6 * n:6 * n + 40]!r}")
        if n == 0:
            return 0
        now = time.perf_counter()
        pending = self._pending
        left = n
        while left:
            if not pending:
                raise ProtocolError(f"{left} PONG replies with no ping pending")
            entry = pending[0]
            take = entry[0] if entry[0] <= left else left
            entry[0] -= take
            left -= take
            if entry[0] == 0:
                pending.popleft()
                fut = entry[2]
                if not fut.done():
                    fut.set_result(now - entry[1])
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
    from ._conn import api as _native
    addr = parse_address(host) if port is None else (str(host), int(port))
    conn = await _native.connect(addr, timeout=timeout)
    return PingClient(conn, addr)


class PingHandler(_HandlerBase):  # type: ignore[misc,valid-type]
    """A `ringline.Handler` answering ``PONG\\r\\n`` to each ``PING`` line:
    ``ringline.serve(PingHandler, ("0.0.0.0", 7000))``."""

    max_line = 1024

    async def on_accept(self, conn: Any) -> None:
        on_data = self._make_parser(conn)
        try:
            while await conn.with_data(on_data):
                pass
        except ConnectionError:
            pass        # the peer went away, or on_data closed an endless line

    def _make_parser(self, conn: Any) -> Any:
        send = conn.send_nowait
        max_line = self.max_line

        def on_data(view: memoryview) -> int:
            data = bytes(view)
            size = len(data)
            n = data.count(_PING)
            if n * 6 == size:              # the common case: only whole PINGs
                send(_PONG * n)
                return size
            out = []
            pos = 0
            while True:
                eol = data.find(b"\n", pos)
                if eol < 0:
                    if size - pos > max_line:
                        conn.close()
                        return size
                    break
                line = data[pos:eol].rstrip(b"\r")
                out.append(_PONG if line.upper() == b"PING" else b"ERROR unknown command\r\n")
                pos = eol + 1
            if out:
                send(b"".join(out))
            return pos
        return on_data
