"""Opening QUIC connections: ``configuration`` (the engine's settings from
ringline's knobs), ``connect`` (a client: its own connected UDP socket, the
handshake bounded by a timeout, a clear error when it fails) and ``serve``
(a server: one bound socket, one engine connection per peer address).

Lifecycle: ``connect`` returns once the handshake completed (the
certificate was verified against the system CAs, a ``cafile``, or not at
all with ``verify=False``); a failed or timed-out handshake closes the
socket and raises ``QuicHandshakeError`` (a ConnectionError) carrying the
engine's reason (e.g. the TLS alert of a bad certificate).

Resumption and 0-RTT: with ``tickets`` (a ``TicketStore``) the client
offers the ticket stored for its origin (server name, address, ALPN) and
stores the ones the server sends. With ``early=True`` and a ticket that
allows early data, ``connect`` returns right after sending the first
flight (``conn.early`` is True, ``conn.handshake`` still pending): what the
caller sends now goes as 0-RTT; if the server refuses it the engine sends
it again after the handshake (both engines: 0-RTT and 1-RTT share a packet
number space, refused 0-RTT packets are declared lost). The caller decides
what may go early (HTTP/3: GET and HEAD only). A server with ``tickets``
issues tickets and accepts 0-RTT from a ticket it issued (each ticket
resumes once).

``serve`` returns the endpoint; ``endpoint.close()`` stops it. No state of
its own.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, Callable, List, Optional

from ._conn import QuicConn
from ._endpoint import QuicEndpoint, open_endpoint
from ._engine import Engine, load
from ._tickets import TicketStore

__all__ = ["QuicHandshakeError", "configuration", "connect", "serve"]


class QuicHandshakeError(ConnectionError):
    """The QUIC handshake failed or timed out; the message says why."""


def configuration(engine: Engine, *, is_client: bool, alpn: Optional[List[str]] = None,
                  server_name: Optional[str] = None, verify: Any = True,
                  certfile: Optional[str] = None, keyfile: Optional[str] = None,
                  idle_timeout: float = 30.0, max_data: Optional[int] = None,
                  max_stream_data: Optional[int] = None) -> Any:
    """The engine's QuicConfiguration. ``verify``: True (system CAs),
    False (no check), or a CA bundle path."""
    cfg = engine.QuicConfiguration(is_client=is_client, alpn_protocols=alpn,
                                   idle_timeout=idle_timeout)
    # qh3's H3 layer announces H3_DATAGRAM, which needs the transport parameter
    cfg.max_datagram_frame_size = 65536
    if max_data is not None:
        cfg.max_data = max_data
    if max_stream_data is not None:
        cfg.max_stream_data = max_stream_data
    if is_client:
        cfg.server_name = server_name
        if verify is False:
            cfg.verify_mode = ssl.CERT_NONE
        elif isinstance(verify, str):
            cfg.load_verify_locations(cafile=verify)
        elif verify is not True:
            raise TypeError("verify must be True, False or a CA bundle path for QUIC")
    if certfile is not None:
        cfg.load_cert_chain(certfile, keyfile)
    return cfg


def _reason(e: Any) -> str:
    code = getattr(e, "error_code", None)
    phrase = getattr(e, "reason_phrase", "") or ""
    if code is not None and 0x100 <= code < 0x200:
        alert = code - 0x100
        names = {42: "bad_certificate", 43: "unsupported_certificate", 45: "certificate_expired",
                 46: "certificate_unknown", 48: "unknown_ca", 40: "handshake_failure",
                 120: "no_application_protocol", 80: "internal_error"}
        return f"TLS alert {names.get(alert, alert)}" + (f": {phrase}" if phrase else "")
    if code is not None:
        return f"error 0x{code:x}" + (f": {phrase}" if phrase else "")
    return phrase or "connection terminated"


async def connect(host: str, port: int, *, alpn: Optional[List[str]] = None,
                  server_name: Optional[str] = None, verify: Any = True,
                  engine: Optional[str] = None, idle_timeout: float = 30.0,
                  max_data: Optional[int] = None, max_stream_data: Optional[int] = None,
                  timeout: Optional[float] = 10.0,
                  on_event: Optional[Callable[[Any], None]] = None,
                  config: Any = None, gso: Optional[bool] = None,
                  tickets: Optional[TicketStore] = None, early: bool = False) -> QuicConn:
    """A client connection to ``host:port``, after its handshake (or, with
    ``early`` and a ticket allowing it, before: see the notes). ``gso``:
    UDP GSO sends (None: ``RINGLINE_QUIC_GSO``, on by default)."""
    loop = asyncio.get_running_loop()
    eng = load(engine)
    infos = await loop.getaddrinfo(host, port, type=2)   # SOCK_DGRAM
    addr = infos[0][4][:2]
    sni = server_name if server_name is not None else host
    ticket = None
    handler = None
    if config is None:
        config = configuration(eng, is_client=True, alpn=alpn, server_name=sni, verify=verify,
                               idle_timeout=idle_timeout, max_data=max_data,
                               max_stream_data=max_stream_data)
        if tickets is not None:
            key = (eng.name, config.server_name, addr, tuple(alpn or ()))
            ticket = tickets.get(key)
            config.session_ticket = ticket

            def handler(t: Any) -> None:
                tickets.put(key, t)
    ep = await open_endpoint(loop, remote=addr, gso=gso)
    quic = eng.QuicConnection(configuration=config, session_ticket_handler=handler)
    try:
        quic.connect(addr, now=loop.time())
    except Exception:
        if ticket is None or tickets is None:
            ep.close()
            raise
        # qh3 2.1 cannot fit a large ticket (GnuTLS's, from ngtcp2) in its
        # ClientHello: forget the ticket, connect without it
        tickets.forget(key)
        ticket = config.session_ticket = None
        quic = eng.QuicConnection(configuration=config, session_ticket_handler=handler)
        try:
            quic.connect(addr, now=loop.time())
        except BaseException:
            ep.close()
            raise
    c = QuicConn(ep, quic, addr, eng, on_event)
    ep.client = c
    c.kick()
    if early and ticket is not None and ticket.max_early_data_size == 0xFFFFFFFF:
        c.early = True       # 0-RTT: the caller sends now, the handshake goes on
        return c
    try:
        if timeout is None:
            await asyncio.shield(c.handshake)
        else:
            await asyncio.wait_for(asyncio.shield(c.handshake), timeout)
    except asyncio.TimeoutError:
        ep.close()
        raise QuicHandshakeError(f"QUIC handshake with {host}:{port} timed out after "
                                 f"{timeout} s") from None
    except BaseException:
        ep.close()
        raise
    if c.terminated is not None or not isinstance(c.handshake.result(),
                                                  eng.events.HandshakeCompleted):
        ep.close()
        raise QuicHandshakeError(f"QUIC handshake with {host}:{port} failed: "
                                 f"{_reason(c.terminated or c.handshake.result())}")
    return c


async def serve(host: str, port: int, *, certfile: str, keyfile: Optional[str] = None,
                alpn: Optional[List[str]] = None, engine: Optional[str] = None,
                idle_timeout: float = 30.0, max_data: Optional[int] = None,
                max_stream_data: Optional[int] = None,
                on_connection: Callable[[QuicConn], Any],
                gso: Optional[bool] = None,
                tickets: Optional[TicketStore] = None) -> QuicEndpoint:
    """A server on ``host:port``: ``on_connection(conn)`` is called for
    each new peer before its first datagram is processed, and sets
    ``conn.on_event``. Connection migration is ignored (a peer is its
    address)."""
    loop = asyncio.get_running_loop()
    eng = load(engine)
    config = configuration(eng, is_client=False, alpn=alpn, certfile=certfile,
                           keyfile=keyfile, idle_timeout=idle_timeout, max_data=max_data,
                           max_stream_data=max_stream_data)
    ep: Optional[QuicEndpoint] = None

    def accept(addr: Any, data: bytes) -> Optional[QuicConn]:
        dcid = eng.initial_dcid(data)
        if dcid is None:
            return None
        if tickets is None:
            quic = eng.QuicConnection(configuration=config,
                                      original_destination_connection_id=dcid)
        else:
            quic = eng.QuicConnection(configuration=config,
                                      original_destination_connection_id=dcid,
                                      session_ticket_fetcher=tickets.fetch,
                                      session_ticket_handler=tickets.add)
        c = QuicConn(ep, quic, addr, eng, None, send_addr=addr)
        on_connection(c)
        return c

    ep = await open_endpoint(loop, local=(host, port), accept=accept, gso=gso)
    return ep
