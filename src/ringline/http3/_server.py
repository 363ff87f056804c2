"""A small HTTP/3 server on ringline.quic, for tests, examples and the
benchmark (not a production server: no request bounds beyond the engine's,
whole request bodies in memory).

Owns ``H3Server``: the QUIC endpoint (``ringline.quic.serve``: one socket,
one connection per peer), one engine H3Connection per connection, and the
responses in flight. Requests go to ``app(method, path, headers, body)``,
which returns ``(status, headers, body)`` or an awaitable of it (answered
from a task of its own); the default app
(``demo_app``) serves ``/bytes/N`` (N bytes of a fixed pattern),
``/echo`` (the request body back), ``/length`` (the request body's length
and sha256, as text), ``/hello``, ``/reset`` (the stream is
reset), ``/goaway`` (answers, then sends GOAWAY and closes once the
streams in flight finished) and ``/sleep/S`` (answers after S seconds).

Response bodies leave as the engine takes them: at most ``_CHUNK`` bytes are
queued per stream, topped up once per turn (``on_turn``) when the engine
reports its send buffer (qh3); with aioquic the body is queued whole.

Lifecycle: ``await serve(...)`` -> ``server.port`` -> ``server.close()``.
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

from ..quic import QuicConn, TicketStore, serve as _qserve

__all__ = ["H3Server", "serve", "demo_app", "pattern"]

Reply = Tuple[int, List[Tuple[bytes, bytes]], bytes]
App = Callable[[str, str, List[Tuple[bytes, bytes]], bytes], Union[Reply, Awaitable[Reply]]]
_CHUNK = 1 << 20
_PATTERN = bytes(range(256)) * 4096          # 1 MiB


def pattern(n: int, offset: int = 0) -> bytes:
    """The first ``n`` bytes of /bytes/N's body (from ``offset``)."""
    out = bytearray()
    pos = offset % 256
    while len(out) < n:
        take = min(n - len(out), len(_PATTERN) - pos)
        out += _PATTERN[pos:pos + take]
        pos = 0
    return bytes(out)


async def _sleep(seconds: float) -> Reply:
    await asyncio.sleep(seconds)
    return 200, [], b"slept"


def demo_app(method: str, path: str, headers: List[Tuple[bytes, bytes]],
             body: bytes) -> Union[Reply, Awaitable[Reply]]:
    if path.startswith("/bytes/"):
        n = int(path[7:])
        return 200, [(b"content-type", b"application/octet-stream"),
                     (b"content-length", str(n).encode())], pattern(n)
    if path == "/echo":
        return 200, [(b"content-length", str(len(body)).encode())], body
    if path == "/length":
        return 200, [], f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    if path.startswith("/sleep/"):
        return _sleep(float(path[7:]))
    if path in ("/hello", "/goaway"):
        return 200, [(b"content-type", b"text/plain")], b"hello"
    return 404, [], b"not found"


class _Out:
    __slots__ = ("sid", "body", "pos")

    def __init__(self, sid: int, body: bytes) -> None:
        self.sid = sid
        self.body = memoryview(body)
        self.pos = 0


class _Peer:
    """One client connection: its H3Connection, requests being received
    and responses being sent."""

    def __init__(self, server: "H3Server", qc: QuicConn) -> None:
        self.server = server
        self.qc = qc
        self.h3: Any = None
        self.reqs: Dict[int, Tuple[List[Tuple[bytes, bytes]], List[bytes]]] = {}
        self.out: Dict[int, _Out] = {}
        self.tasks: set = set()
        self.goaway = False
        self.last_sid = -4                    # the highest request stream seen
        self.size: Optional[Callable[[int], int]] = getattr(qc.quic, "get_send_buffer_size",
                                                            None)
        qc.on_event = self.on_event
        qc.on_turn = self.on_turn

    def on_event(self, e: Any) -> None:
        eng = self.qc.engine
        if type(e) is eng.events.ProtocolNegotiated or (self.h3 is None and
                                                          type(e) is eng.events.HandshakeCompleted):
            if self.h3 is None:
                self.h3 = eng.H3Connection(self.qc.quic)
            return
        if type(e) is eng.events.ConnectionTerminated:
            for t in self.tasks:
                t.cancel()
            self.server.peers.discard(self)
            return
        if self.h3 is None:
            return
        if type(e) in (eng.events.StopSendingReceived, eng.events.StreamReset):
            self.out.pop(e.stream_id, None)      # the client gave up on it
            self.reqs.pop(e.stream_id, None)
        ev = eng.h3events
        for he in self.h3.handle_event(e):
            t = type(he)
            if t is ev.HeadersReceived:
                if he.stream_id > self.last_sid:
                    self.last_sid = he.stream_id
                if he.stream_id not in self.reqs:
                    self.reqs[he.stream_id] = (he.headers, [])
                if he.stream_ended:
                    self._start(he.stream_id)
            elif t is ev.DataReceived:
                r = self.reqs.get(he.stream_id)
                if r is not None:
                    r[1].append(he.data)
                    if he.stream_ended:
                        self._start(he.stream_id)

    def _start(self, sid: int) -> None:
        headers, chunks = self.reqs.pop(sid)
        method = path = ""
        rest = []
        for k, v in headers:
            if k == b":method":
                method = v.decode()
            elif k == b":path":
                path = v.decode()
            elif k[:1] != b":":
                rest.append((k, v))
        if path == "/reset":
            self.qc.quic.reset_stream(sid, 0x10C)
            self.qc.kick()
            return
        reply = self.server.app(method, path, rest, b"".join(chunks))
        if inspect.isawaitable(reply):
            task = asyncio.ensure_future(self._later(sid, path, reply))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            self._answer(sid, path, reply)

    async def _later(self, sid: int, path: str, reply: Awaitable[Reply]) -> None:
        self._answer(sid, path, await reply)

    def _answer(self, sid: int, path: str, reply: Reply) -> None:
        status, hdrs, data = reply
        if self.qc.terminated is not None:
            return
        self.h3.send_headers(sid, [(b":status", str(status).encode())] + list(hdrs),
                             end_stream=not data)
        if data:
            if self.size is None:
                self.h3.send_data(sid, data, True)
            else:
                self.out[sid] = _Out(sid, data)
                self._top_up()
        if path == "/goaway":
            self.send_goaway(sid + 4)
        self.qc.kick()

    def _top_up(self) -> None:
        size = self.size
        assert size is not None
        done = []
        for o in self.out.values():
            while o.pos < len(o.body) and size(o.sid) < _CHUNK:
                end = min(o.pos + _CHUNK, len(o.body))
                try:
                    self.h3.send_data(o.sid, o.body[o.pos:end], end == len(o.body))
                except Exception:          # the stream was reset meanwhile
                    o.pos = len(o.body)
                    break
                o.pos = end
            if o.pos >= len(o.body):
                done.append(o.sid)
        for sid in done:
            del self.out[sid]

    def on_turn(self) -> None:
        if self.out:
            self._top_up()
        if self.goaway and not self.out and not self.tasks and not self.reqs:
            self.goaway = False
            self.qc.loop.call_later(0.05, self.qc.close, 0x100, "")

    def send_goaway(self, last: int) -> None:
        """Send GOAWAY(last): streams from ``last`` on are not processed;
        the connection closes once the streams in flight finished."""
        h3mod = self.qc.engine.h3
        frame = h3mod.encode_frame(h3mod.FrameType.GOAWAY, _varint(last))
        self.qc.quic.send_stream_data(self.h3._local_control_stream_id, frame)
        self.goaway = True
        self.qc.kick()


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 0x40000000:
        return (v | 0x80000000).to_bytes(4, "big")
    return (v | 0xC000000000000000).to_bytes(8, "big")


class H3Server:
    """See the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.endpoint: Any = None
        self.peers: set = set()
        self.tickets: Optional[TicketStore] = None

    @property
    def port(self) -> int:
        return self.endpoint.transport.get_extra_info("sockname")[1]

    def _on_connection(self, qc: QuicConn) -> None:
        self.peers.add(_Peer(self, qc))

    def goaway(self) -> None:
        """GOAWAY to every client (no new requests); each connection closes
        when its streams finished."""
        for p in list(self.peers):
            if p.h3 is not None:
                p.send_goaway(p.last_sid + 4)

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()


async def serve(host: str, port: int, *, certfile: str, keyfile: Optional[str] = None,
                app: Optional[App] = None, engine: Optional[str] = None,
                idle_timeout: float = 30.0, max_data: Optional[int] = None,
                max_stream_data: Optional[int] = None,
                gso: Optional[bool] = None, session_tickets: bool = True) -> H3Server:
    """Serve HTTP/3 on ``host:port`` (0: any free port; see ``.port``).
    ``gso``: UDP GSO sends (None: ``RINGLINE_QUIC_GSO``, on by default).
    ``session_tickets``: issue tickets (``srv.tickets``) and accept 0-RTT
    from them."""
    srv = H3Server(app or demo_app)
    srv.tickets = TicketStore() if session_tickets else None
    srv.endpoint = await _qserve(host, port, certfile=certfile, keyfile=keyfile, alpn=["h3"],
                                 engine=engine, idle_timeout=idle_timeout, max_data=max_data,
                                 max_stream_data=max_stream_data,
                                 on_connection=srv._on_connection, gso=gso,
                                 tickets=srv.tickets)
    return srv
