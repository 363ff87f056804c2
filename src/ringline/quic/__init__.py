"""ringline.quic: QUIC connections on ringline's UDP path, with a sans-IO
engine (qh3 by default, or aioquic) doing the protocol.

    conn = await ringline.quic.connect("127.0.0.1", 4433, alpn=["h3"],
                                       cafile="ca.pem", on_event=handler)

Layout: ``_engine`` (which engine, its modules), ``_endpoint`` (one UDP
socket: receive batches, the once-per-turn drive, batched sends), ``_conn``
(one connection: engine feed, events, the timer, pause/resume), ``_open``
(``connect`` for clients, ``serve`` for servers: many connections on one
socket), ``_tickets`` (TicketStore: session tickets for resumption and
0-RTT). See docs/http3.md.
"""
from ._conn import QuicConn
from ._endpoint import QuicEndpoint, open_endpoint
from ._engine import Engine, load
from ._open import QuicHandshakeError, configuration, connect, serve
from ._tickets import TicketStore

__all__ = ["QuicConn", "QuicEndpoint", "open_endpoint", "Engine", "load", "connect", "serve",
           "configuration", "QuicHandshakeError", "TicketStore"]
