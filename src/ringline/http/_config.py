"""The knobs of ringline.http: ``Timeout``, ``Limits`` and ``Bounds``.

Owns the validated, immutable settings a Client hands to its pools and
connections. ``Timeout`` and ``Limits`` take httpx's argument names;
``Bounds`` holds the hostile-peer bounds (each exceeded bound closes that
connection with ``LimitExceeded`` naming the knob; other connections go on).
Nothing here does I/O.
"""
from __future__ import annotations

from typing import Any, Optional, Union

__all__ = ["Timeout", "Limits", "Bounds", "DEFAULT_TIMEOUT"]

_UNSET: Any = object()


def _check(name: str, value: Any, allow_none: bool = True) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    return value


class Timeout:
    """Timeouts in seconds (None: no limit). ``Timeout(5.0)`` sets all four;
    keywords override one each: connect (TCP + TLS handshake), read (each
    wait for response bytes), write (each wait for send-queue room), pool
    (waiting for a connection of a full pool)."""

    __slots__ = ("connect", "read", "write", "pool")
    connect: Optional[float]
    read: Optional[float]
    write: Optional[float]
    pool: Optional[float]

    def __init__(self, timeout: Union[None, float, "Timeout"] = _UNSET, *,
                 connect: Optional[float] = _UNSET, read: Optional[float] = _UNSET,
                 write: Optional[float] = _UNSET, pool: Optional[float] = _UNSET) -> None:
        if isinstance(timeout, Timeout):
            base = timeout
            vals: list = [base.connect, base.read, base.write, base.pool]
        else:
            default = 5.0 if timeout is _UNSET else _check("timeout", timeout)
            vals = [default] * 4
        for i, (name, v) in enumerate((("connect", connect), ("read", read),
                                       ("write", write), ("pool", pool))):
            if v is not _UNSET:
                vals[i] = _check(name, v)
        self.connect, self.read, self.write, self.pool = vals

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and (self.connect, self.read, self.write, self.pool) \
            == (other.connect, other.read, other.write, other.pool)

    def __repr__(self) -> str:
        return (f"Timeout(connect={self.connect}, read={self.read}, write={self.write}, "
                f"pool={self.pool})")


DEFAULT_TIMEOUT = Timeout(5.0)


class Limits:
    """Connection limits, per origin (scheme, host, port): at most
    ``max_connections`` HTTP/1.1 connections open at once (a request past it
    waits, bounded by the pool timeout), at most ``max_keepalive_connections``
    of them kept idle, each idle for at most ``keepalive_expiry`` seconds.
    HTTP/2 uses one connection per origin while the server's
    MAX_CONCURRENT_STREAMS has room, and opens another (up to
    ``max_connections``) when it has not."""

    __slots__ = ("max_connections", "max_keepalive_connections", "keepalive_expiry")

    def __init__(self, *, max_connections: Optional[int] = 100,
                 max_keepalive_connections: Optional[int] = 20,
                 keepalive_expiry: Optional[float] = 5.0) -> None:
        for name, v in (("max_connections", max_connections),
                        ("max_keepalive_connections", max_keepalive_connections)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {v!r}")
        if max_connections == 0:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections if max_connections is not None else 1 << 30
        self.max_keepalive_connections = (max_keepalive_connections
                                          if max_keepalive_connections is not None else 1 << 30)
        self.keepalive_expiry = _check("keepalive_expiry", keepalive_expiry)

    def __repr__(self) -> str:
        return (f"Limits(max_connections={self.max_connections}, max_keepalive_connections="
                f"{self.max_keepalive_connections}, keepalive_expiry={self.keepalive_expiry})")


class Bounds:
    """What a response may use, each a knob with a safe default.

    ==========================  =========  =========================================
    knob                        default    bounds
    ==========================  =========  =========================================
    max_header_bytes            65536      status line + header section (h1), the
                                           decoded header list (h2)
    max_headers                 128        header fields in one response
    max_body_bytes              1 GiB      raw body bytes of one response
    max_decoded_bytes           1 GiB      body bytes after Content-Encoding
    max_decode_ratio            200        decoded / encoded bytes (past 1 MiB)
    max_chunk_line              4096       a chunk-size line with its extensions:
                                           bytes received with no chunk progress
    max_trailer_bytes           16384      the trailer section (h1 chunked, h2)
    hpack_table_size            65536      the HPACK dynamic table we allow the
                                           server (SETTINGS_HEADER_TABLE_SIZE)
    max_concurrent_streams      1000       streams we open on one h2 connection
                                           (also capped by the server's setting)
    max_control_frames          1000       h2 SETTINGS / PING / empty DATA / other
                                           frames carrying no progress, per second
    ==========================  =========  =========================================
    """

    __slots__ = ("max_header_bytes", "max_headers", "max_body_bytes", "max_decoded_bytes",
                 "max_decode_ratio", "max_chunk_line", "max_trailer_bytes",
                 "hpack_table_size", "max_concurrent_streams", "max_control_frames")
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int
    max_decoded_bytes: int
    max_decode_ratio: int
    max_chunk_line: int
    max_trailer_bytes: int
    hpack_table_size: int
    max_concurrent_streams: int
    max_control_frames: int

    def __init__(self, *, max_header_bytes: int = 65536, max_headers: int = 128,
                 max_body_bytes: int = 1 << 30, max_decoded_bytes: int = 1 << 30,
                 max_decode_ratio: int = 200, max_chunk_line: int = 4096,
                 max_trailer_bytes: int = 16384, hpack_table_size: int = 65536,
                 max_concurrent_streams: int = 1000, max_control_frames: int = 1000) -> None:
        for name in self.__slots__:
            v = locals()[name]
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
            setattr(self, name, v)

    def __repr__(self) -> str:
        return "Bounds(" + ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__) + ")"


DEFAULT_BOUNDS = Bounds()
