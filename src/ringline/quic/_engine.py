"""The sans-IO QUIC engine ringline.quic drives: qh3 (default) or aioquic.

Owns only the choice: ``load(name)`` returns an ``Engine`` naming the
engine's modules (QuicConnection, QuicConfiguration, the QUIC and HTTP/3
event classes, H3Connection) so that the layers above never import an
engine by name. Both engines share aioquic's API (qh3 is its fork with the
packet core in native code); what differs is detected here once:
``many`` (the connection takes a list of datagrams in one call:
``receive_many_datagrams``, qh3 only).

Why qh3 by default: measured on this machine, one 32 MiB stream between two
in-process connections costs 1.71 s of CPU with aioquic 1.7.2 and 0.24 s
with qh3 2.1.0 (7x), the handshake 4 ms vs 2-3 ms. aioquic stays selectable
(``engine="aioquic"``) so the I/O layer can be compared engine for engine.
No state; importing this module imports no engine.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Optional

__all__ = ["Engine", "load", "DEFAULT"]

DEFAULT = "qh3"
_cache: Dict[str, "Engine"] = {}


class Engine:
    """The modules of one engine (see the module docstring)."""

    __slots__ = ("name", "QuicConnection", "QuicConfiguration", "events", "h3", "h3events",
                 "H3Connection", "many", "packet", "Buffer")

    def __init__(self, name: str) -> None:
        conn = importlib.import_module(name + ".quic.connection")
        cfg = importlib.import_module(name + ".quic.configuration")
        self.name = name
        self.QuicConnection: Any = conn.QuicConnection
        self.QuicConfiguration: Any = cfg.QuicConfiguration
        self.events: Any = importlib.import_module(name + ".quic.events")
        self.h3: Any = importlib.import_module(name + ".h3.connection")
        self.h3events: Any = importlib.import_module(name + ".h3.events")
        self.H3Connection: Any = self.h3.H3Connection
        self.many = hasattr(conn.QuicConnection, "receive_many_datagrams")
        self.packet: Any = importlib.import_module(name + ".quic.packet")
        self.Buffer: Any = (importlib.import_module("qh3._hazmat").Buffer if name == "qh3"
                            else importlib.import_module("aioquic.buffer").Buffer)

    def initial_dcid(self, data: bytes, cid_length: int = 8) -> Optional[bytes]:
        """The destination connection id of a client's first datagram (an
        Initial packet of at least 1200 bytes), or None for anything else."""
        if len(data) < 1200:
            return None
        try:
            h = self.packet.pull_quic_header(self.Buffer(data=data), host_cid_length=cid_length)
        except ValueError:
            return None
        if h.version is None or h.packet_type != self.packet.QuicPacketType.INITIAL:
            return None
        return bytes(h.destination_cid)

    def __repr__(self) -> str:
        return f"<quic engine {self.name}>"


def load(name: Optional[str] = None) -> Engine:
    """The engine called ``name`` ("qh3" or "aioquic"; None: the default,
    falling back to aioquic when qh3 is not installed)."""
    if name is None:
        try:
            return load(DEFAULT)
        except ImportError:
            return load("aioquic")
    if name not in ("qh3", "aioquic"):
        raise ValueError(f"unknown QUIC engine {name!r} (qh3 or aioquic)")
    eng = _cache.get(name)
    if eng is None:
        eng = _cache[name] = Engine(name)
    return eng
