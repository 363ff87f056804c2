"""ringline.ping: a PING/PONG line protocol, client and server side.

Public API: `connect()` -> `PingClient` (``await ringline.ping.connect(host,
port)``), `PingHandler`, a ready-made `ringline.Handler` that answers
``PONG\\r\\n`` to every ``PING\\r\\n`` line, and `ProtocolError`. The protocol
is the smallest request/response pair there is, which makes it the yardstick
of the runtime's per-message cost.

Layout: _proto (sans-IO: wire constants, PONG counting, the FIFO of pending
pings, the server's line answers and bounds), _client (PingClient, connect:
the I/O glue), _server (PingHandler). No global state.

Server side: `PingHandler.on_accept` answers each complete ``PING`` line
(``PING`` alone, any case, CRLF or LF) with one ``PONG\\r\\n``, all the
answers to one receive batch in one send; any other line gets
``ERROR unknown command\\r\\n``; a line longer than `max_line` without a
newline closes the connection.

Lifecycle: a `PingClient` lives from `connect()` to `close()` on the loop it
was created on; a `PingHandler` lives in each worker, as every Handler.
Invariants: PONGs are matched to pings in order; this file only names the
parts.
"""
from ._client import PingClient, connect
from ._proto import ProtocolError
from ._server import PingHandler

__all__ = ["connect", "PingClient", "PingHandler", "ProtocolError"]
