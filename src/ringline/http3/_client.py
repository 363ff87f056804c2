"""``ringline.http3.Client``: HTTP/3 requests with ringline.http's API.

Owns the per-origin HTTP/3 connections (one ``H3Conn`` per origin, many
concurrent streams on it; a new one is dialed when the current one goes
away or fills its stream limit and the pool timeout passes) and the dial
itself (``ringline.quic.connect`` with ALPN h3, TLS verification on by
default; session tickets kept per origin in ``tickets`` for resumption and
0-RTT GET/HEAD). Everything else -- building requests, headers, redirects,
``stream()``, the one-shot read of ``request()``, ``Response`` -- is
ringline.http's Client, inherited unchanged.

Lifecycle: as ringline.http.Client (``async with`` or ``aclose()``, which
closes every connection with H3_NO_ERROR). Invariants: at most one dial per
origin at a time; a connection leaves ``_conns`` once (``_forget``) when it
goes away or closes.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional, Tuple

from ..http._client import Client as _HTTPClient
from ..http._config import DEFAULT_TIMEOUT, Bounds, Timeout
from ..http._errors import ConnectError, ConnectTimeout, LocalProtocolError
from ..http._models import URL, Headers, Request, Response
from ..quic import QuicHandshakeError, TicketStore, connect as _qconnect
from ._config import DEFAULT_QUIC, QuicLimits
from ._h3conn import H3Conn

__all__ = ["Client"]

USER_AGENT = "ringline-http3/0.1"


def _early(q: QuicLimits) -> bool:
    """Whether GET/HEAD go as 0-RTT (``QuicLimits.early_data``; None: on
    with aioquic only -- qh3 2.1 sometimes loses its 1-RTT packet key on a
    0-RTT connection and never finishes the handshake)."""
    if q.early_data is not None:
        return q.early_data
    return q.engine == "aioquic"


class Client(_HTTPClient):
    """An HTTP/3 client: ``Client(base_url=None, headers=None, cookies=None,
    params=None, timeout=5.0, bounds=Bounds(), quic=QuicLimits(), verify=True,
    follow_redirects=False, max_redirects=20)``. ``verify`` is True (system
    CAs), False, or a CA bundle path. https URLs only."""

    def __init__(self, *, base_url: Any = None, headers: Any = None, cookies: Any = None,
                 params: Any = None, timeout: Any = DEFAULT_TIMEOUT,
                 bounds: Optional[Bounds] = None,
                 quic: Optional[QuicLimits] = None, verify: Any = True,
                 follow_redirects: bool = False, max_redirects: int = 20) -> None:
        if not (verify is True or verify is False or isinstance(verify, str)):
            raise TypeError("verify must be True, False or a CA bundle path")
        super().__init__(base_url=base_url, headers=headers, cookies=cookies, params=params,
                         timeout=timeout, bounds=bounds, verify=verify,
                         follow_redirects=follow_redirects,
                         max_redirects=max_redirects)
        if headers is None or "user-agent" not in Headers(headers):
            self.headers["User-Agent"] = USER_AGENT
        self.quic = quic or DEFAULT_QUIC
        # session tickets per origin: resumption and 0-RTT on the next dial
        self.tickets: Optional[TicketStore] = TicketStore() if self.quic.session_tickets \
            else None
        self._conns: Dict[Tuple[str, str, int], H3Conn] = {}
        self._dials: Dict[Tuple[str, str, int], asyncio.Future] = {}
        self._all: set = set()

    async def aclose(self) -> None:
        self._closed = True
        for c in list(self._all):
            c.close()
        self._all.clear()
        self._conns.clear()

    def _forget(self, c: H3Conn) -> None:
        if self._conns.get(c.origin) is c:
            del self._conns[c.origin]
        if c.closed:
            self._all.discard(c)

    async def _dial(self, url: URL, t: Timeout) -> H3Conn:
        q = self.quic
        try:
            qc = await _qconnect(url.host, url.port, alpn=["h3"], verify=self._verify,
                                 engine=q.engine, idle_timeout=q.idle_timeout,
                                 max_data=q.max_data, max_stream_data=q.max_stream_data,
                                 timeout=t.connect, gso=q.gso, tickets=self.tickets,
                                 early=_early(q))
        except QuicHandshakeError as exc:
            if "timed out" in str(exc):
                raise ConnectTimeout(str(exc)) from None
            raise ConnectError(str(exc)) from None
        except OSError as exc:
            raise ConnectError(f"cannot open a QUIC connection to {url.netloc}: {exc}") \
                from None
        if qc.alpn != "h3" and not qc.early:     # 0-RTT: the ticket's ALPN was h3
            qc.close()
            raise ConnectError(f"{url.netloc} did not negotiate h3 (ALPN {qc.alpn!r})")
        c = H3Conn(qc, self.bounds, q, url.origin, self)
        self._all.add(c)
        return c

    async def _connection(self, url: URL, t: Timeout) -> H3Conn:
        origin = url.origin
        while True:
            if self._closed:
                raise RuntimeError("the Client is closed")
            c = self._conns.get(origin)
            if c is not None and not c.closed and not c.going_away:
                if c.has_room():
                    return c
                await c.wait_room(t)
                continue
            dial = self._dials.get(origin)
            if dial is not None:
                await asyncio.shield(dial)
                continue
            fut = self._dials[origin] = asyncio.get_running_loop().create_future()
            try:
                c = await self._dial(url, t)
                self._conns[origin] = c
                return c
            finally:
                del self._dials[origin]
                fut.set_result(None)

    async def _attempt(self, req: Request, t: Timeout, stream: bool) -> Response:
        if req.url.scheme != "https":
            raise LocalProtocolError(f"HTTP/3 needs an https URL, got {req.url}")
        conn = await self._connection(req.url, t)
        return await conn.request(self, req, t)
