"""Connection pools, one per origin (scheme, host, port), or per proxy.

Owns ``OriginPool``: dialing (``ringline.connect``, or ``connect_tls`` with
ALPN offering h2 and/or http/1.1; through a proxy, ``_proxy.open_tunnel``
for https origins, a plain connection to the proxy for http ones), the idle
HTTP/1.1 connections (most recently used first, dropped when expired or
found closed by the server), the count of open connections against
``Limits.max_connections`` with a FIFO of requests waiting for room (bounded
by the pool timeout), and the HTTP/2 connections of the origin (one is used
while it has stream room; a second is opened only when every one is full or
going away; a connection whose server SETTINGS have not arrived yet is
waited for, at most ``SETTINGS_WAIT`` s, rather than counted as full).

A pool with a ``proxy`` is one of two kinds. A tunnel pool (https: one per
proxy and origin) holds connections to its origin as any pool does, only
dialled through the proxy. A forwarding pool (``forward`` is the proxy: one
per proxy, shared by every http:// origin) holds HTTP/1.1 connections to the
proxy itself, which the Client sends absolute-form requests on.

Lifecycle: a pool is created by the Client on the first request to its
origin (or proxy) and lives until ``Client.aclose()``, which closes every
connection it holds. A connection counts against the limit from the moment
its dial starts until it is closed (``_forget``).

Invariants: ``opened`` (dialing + idle + busy h1, + h2) never exceeds
max_connections; a request waiting for room is woken exactly once per slot
freed; an idle connection is reused only if it is still open, has no
unsolicited bytes and is within keepalive_expiry.
"""
from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, Deque, List, Optional, Tuple

from .._conn import api as _api
from .._conn import tls as _tls
from .._conn.timers import timeout as _timeout
from ._config import Bounds, Limits, Timeout
from ._errors import ConnectError, ConnectTimeout, PoolTimeout, TransportError
from ._h1conn import H1Connection
from ._proxy import Proxy, open_tunnel

__all__ = ["OriginPool", "SETTINGS_WAIT"]

# the longest a request waits for a new HTTP/2 connection's SETTINGS (its
# stream limit) before a second connection is dialled for it
SETTINGS_WAIT = 1.0


class OriginPool:
    __slots__ = ("origin", "limits", "bounds", "ssl_context", "http1", "http2", "idle",
                 "opened", "waiters", "h2conns", "h2_dialing", "closed", "loop", "h2_factory",
                 "dial_addr", "proxy", "forward")

    def __init__(self, origin: Tuple[str, str, int], limits: Limits, bounds: Bounds,
                 ssl_context: Optional[ssl.SSLContext], http1: bool, http2: bool,
                 h2_factory: Any = None, proxy: Optional[Proxy] = None) -> None:
        self.origin = origin
        self.dial_addr = (origin[1], origin[2]) if proxy is None else (proxy.host, proxy.port)
        self.proxy = proxy
        # a pool of plain connections to a proxy forwards http:// requests
        self.forward = proxy if proxy is not None and ssl_context is None else None
        self.limits = limits
        self.bounds = bounds
        self.ssl_context = ssl_context
        self.http1 = http1
        self.http2 = http2
        self.h2_factory = h2_factory
        self.idle: List[H1Connection] = []
        self.opened = 0
        self.waiters: Deque[asyncio.Future] = collections.deque()
        self.h2conns: List[Any] = []
        self.h2_dialing: Optional[asyncio.Future] = None
        self.closed = False
        self.loop: Any = None

    # -- h1 checkout / return --

    def take_idle(self) -> Optional[H1Connection]:
        idle = self.idle
        if not idle:
            return None
        expiry = self.limits.keepalive_expiry
        now = self.loop.time() if expiry is not None else 0.0
        while idle:
            c = idle.pop()
            if c.usable() and (expiry is None or now - c.idle_since < expiry):
                return c
            c.close()
        return None

    def _put_back(self, c: H1Connection) -> None:
        if self.closed:
            c.close()
            return
        # hand it straight to the first live waiter
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(c)
                return
        if len(self.idle) >= self.limits.max_keepalive_connections:
            c.close()
            return
        c.idle_since = self.loop.time()
        self.idle.append(c)

    def _forget(self, c: Any) -> None:
        try:
            self.idle.remove(c)
        except ValueError:
            pass
        try:
            self.h2conns.remove(c)
        except ValueError:
            pass
        self.opened -= 1
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)          # room to dial
                break

    def _forget_h2_soft(self, c: Any) -> None:
        # a connection going away (GOAWAY) takes no new streams; it still
        # counts against the limit until it closes
        pass

    async def _wait_room(self, t: Timeout) -> Optional[H1Connection]:
        fut = self.loop.create_future()
        self.waiters.append(fut)
        try:
            if t.pool is None:
                return await fut
            async with _timeout(t.pool):
                return await fut
        except BaseException as exc:
            # whatever this waiter was given as it went away goes on
            if fut.done() and not fut.cancelled():
                if fut.result() is not None:
                    self._put_back(fut.result())
                else:
                    self._forget_slot_passed()
            else:
                fut.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(f"no connection to {self._name()} became free within "
                                  f"{t.pool} s (max_connections="
                                  f"{self.limits.max_connections})") from None
            raise

    def _forget_slot_passed(self) -> None:
        # a waiter that was given room but is going away passes it on
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def _name(self) -> str:
        if self.forward is not None:
            return f"proxy {self.forward.name}"
        name = f"{self.origin[0]}://{self.origin[1]}:{self.origin[2]}"
        return name if self.proxy is None else f"{name} through proxy {self.proxy.name}"

    # -- dialing --

    async def _dial(self, t: Timeout) -> Any:
        """Open a connection: returns an H1Connection or an h2 connection."""
        host, port = self.dial_addr
        raw: Any
        try:
            if self.ssl_context is None:
                raw = await _api.connect((host, port), timeout=t.connect)
                alpn = None
            else:
                if self.proxy is None:
                    raw = await _tls.connect_tls((host, port), self.ssl_context,
                                                 server_hostname=host, timeout=t.connect)
                else:
                    raw = await open_tunnel(self.proxy, self.origin, self.ssl_context,
                                            self.bounds, t.connect)
                alpn = raw.ssl_object.selected_alpn_protocol()
        except TransportError:
            raise               # the proxy's refusal or silence (open_tunnel names it)
        except TimeoutError:
            raise ConnectTimeout(f"connecting to {self._name()} took more than "
                                 f"{t.connect} s") from None
        except ssl.SSLError as exc:
            raise ConnectError(f"{self._name()}: {exc}") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self._name()}: {exc}") from exc
        if alpn == "h2" or (alpn is None and self.http2 and not self.http1):
            return await self.h2_factory(raw, self)
        if not self.http1:
            raw.abort()
            raise ConnectError(f"{self._name()} did not negotiate HTTP/2 (ALPN {alpn!r}) "
                               "and HTTP/1.1 is disabled")
        return H1Connection(raw, self, self.bounds)

    async def connection(self, t: Timeout) -> Any:
        """A connection to send one request on: an idle or new H1Connection,
        or an h2 connection with stream room."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        while True:
            if self.h2conns or self.h2_dialing is not None:
                h2 = await self._h2_connection(t)
                if h2 is not None:
                    return h2
            c = self.take_idle()
            if c is not None:
                return c
            if self.opened >= self.limits.max_connections:
                c = await self._wait_room(t)
                if c is not None:
                    if c.usable():
                        return c
                    c.close()
                continue
            return await self._open(t)

    async def _open(self, t: Timeout) -> Any:
        self.opened += 1
        maybe_h2 = self.http2 and (self.ssl_context is not None or not self.http1)
        dialing = None
        if maybe_h2 and self.h2_dialing is None:
            dialing = self.h2_dialing = self.loop.create_future()
        try:
            c = await self._dial(t)
        except BaseException:
            self.opened -= 1
            self._forget_slot_passed()
            if dialing is not None:
                self.h2_dialing = None
                if not dialing.done():
                    dialing.set_result(None)
            raise
        if dialing is not None:
            self.h2_dialing = None
            if not dialing.done():
                dialing.set_result(None)
        if not isinstance(c, H1Connection):
            self.h2conns.append(c)
        return c

    async def _h2_connection(self, t: Timeout) -> Any:
        while True:
            for c in self.h2conns:
                if c.has_room():
                    return c
            if self.h2_dialing is not None:
                await asyncio.shield(self.h2_dialing)
                continue
            if self.h2conns and self.opened < self.limits.max_connections:
                if await self._wait_settings(t):
                    continue
                return None                 # all full: the caller opens another
            if self.h2conns:
                # every connection is full and no room to dial: wait for a stream
                await self.h2conns[0].wait_room(t)
                continue
            return None

    async def _wait_settings(self, t: Timeout) -> bool:
        """A connection is "full" before the server's SETTINGS only because
        its stream limit is not known yet: wait (at most ``SETTINGS_WAIT``
        s, or the connect timeout if shorter) for them instead of dialling a
        second connection for a burst of requests. True if there was one to
        wait for (the caller looks again); a wait that runs out marks that
        connection as waited for, so it is not waited on twice."""
        for c in self.h2conns:
            w = getattr(c, "settled_waiter", None)
            if w is None or w.done():
                continue
            limit = SETTINGS_WAIT if t.connect is None else min(SETTINGS_WAIT, t.connect)
            try:
                async with _timeout(limit):
                    await asyncio.shield(w)
            except TimeoutError:
                if not w.done():
                    w.set_result(None)
            return True
        return False

    def aclose(self) -> None:
        self.closed = True
        for c in list(self.idle):
            c.close()
        self.idle.clear()
        for c in list(self.h2conns):
            c.close()
        for w in self.waiters:
            if not w.done():
                w.cancel()
        self.waiters.clear()
