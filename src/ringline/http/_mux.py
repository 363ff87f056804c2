"""What the two multiplexed HTTP connections -- HTTP/2's ``H2Connection``
(``_h2conn``) and HTTP/3's ``H3Conn`` (``http3/_h3conn``) -- do the same
way, written once.

Owns ``MuxConn``, a base class with no state of its own: waiting for stream
room (bounded by ``Timeout.pool``), handing freed room to one waiter, a
stream leaving the connection, and a stream's wait for its next event
(bounded by ``Timeout.read``); and ``MuxBody``, the body of one response on
a stream (``Response._stream``): its pieces as they arrive, the trailers at
its end, ``release()`` on close.

A connection class provides ``streams`` (id -> stream), ``room_waiters``,
``loop``, ``going_away``, ``close()``, ``cancel_stream(s)`` and ``PROTO``
(its name in error messages); a stream has ``sid``, ``data``, ``ended``,
``error``, ``trailers`` and ``waiter``; a body class provides
``_take(items)``: the bytes of the pieces taken off the stream, crediting
flow control the way its protocol does.

Invariants: a stream leaves ``streams`` once, and that wakes one waiter
for room (a going-away connection closes with its last stream); a wait cut
short -- its read timeout, a cancellation -- resets its stream, so the
server stops sending what nobody will read.
"""
from __future__ import annotations

import asyncio
from typing import Any, List, Optional

from .._conn.timers import timeout as _timeout
from ._config import Timeout
from ._errors import PoolTimeout, ReadTimeout

__all__ = ["MuxConn", "MuxBody"]


class MuxConn:
    __slots__ = ()
    PROTO = "HTTP/2"
    streams: Any
    room_waiters: List[asyncio.Future]
    loop: Any
    going_away: bool

    def close(self) -> None:
        raise NotImplementedError

    def cancel_stream(self, s: Any) -> None:
        raise NotImplementedError

    async def wait_room(self, t: Timeout) -> None:
        """Wait until a stream may open here (or the connection changed:
        going away, closed); the caller checks again."""
        fut = self.loop.create_future()
        self.room_waiters.append(fut)
        try:
            if t.pool is None:
                await fut
            else:
                async with _timeout(t.pool):
                    await fut
        except TimeoutError:
            raise PoolTimeout(f"no {self.PROTO} stream became free within {t.pool} s") from None
        finally:
            try:
                self.room_waiters.remove(fut)
            except ValueError:
                pass

    def _wake_room(self) -> None:
        while self.room_waiters:
            w = self.room_waiters.pop(0)
            if not w.done():
                w.set_result(None)
                return

    def _end_stream(self, s: Any) -> None:
        if self.streams.pop(s.sid, None) is not None:
            self._wake_room()
            if self.going_away and not self.streams:
                self.close()

    async def _wait(self, s: Any, read_timeout: Optional[float]) -> None:
        """Wait for the next event of stream ``s`` (a wake)."""
        fut = s.waiter = self.loop.create_future()
        try:
            if read_timeout is None:
                await fut
            else:
                async with _timeout(read_timeout):
                    await fut
        except TimeoutError:
            self.cancel_stream(s)
            raise ReadTimeout(f"no {self.PROTO} response data within {read_timeout} s") \
                from None
        except BaseException:
            self.cancel_stream(s)
            raise


class MuxBody:
    """The body of one response on a stream of a ``MuxConn``."""

    __slots__ = ("c", "s", "read_timeout", "sender", "trailers", "released")

    def __init__(self, c: Any, s: Any, read_timeout: Optional[float],
                 sender: Optional[asyncio.Task]) -> None:
        self.c = c
        self.s = s
        self.read_timeout = read_timeout
        self.sender = sender          # the request body's task, if any
        self.trailers: Any = None
        self.released = False

    def _take(self, items: List[Any]) -> bytes:
        raise NotImplementedError

    async def read(self) -> Optional[bytes]:
        """The next piece of the body; None at its end."""
        s = self.s
        while True:
            if s.data:
                items = s.data
                s.data = []
                return self._take(items)
            if s.error is not None:
                raise s.error
            if s.ended:
                self.trailers = s.trailers
                self.released = True
                return None
            if self.released:
                return None
            await self.c._wait(s, self.read_timeout)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
        self.c.cancel_stream(self.s)
