"""The one parser of TCP/UDP addresses written as text or as pairs.

Owns: turning ``"host:port"``, ``"[v6addr]:port"``, ``"host"`` (when the
caller has a default port) and ``(host, port)`` pairs into a checked
``(host, port)`` tuple; deciding whether a text names a TCP address at all
(the runtime's `bind` also accepts Unix socket paths).

Rules, the same for every caller (connect, bind, Config.udp_bind, the
protocol clients, redis MOVED/ASK redirections):

* the port is what follows the last ``:``, and must be all digits;
* brackets around an IPv6 host are removed: ``"[::1]:6379"`` -> ``("::1", 6379)``;
* an empty host takes the caller's default (``127.0.0.1`` for clients, ``""``
  -- any address -- for servers);
* the port must lie in ``min_port..65535`` (0 means "any port" where a caller
  binds, so binders pass ``min_port=0``);
* a text with no port gets ``default_port`` when the caller has one, else it
  is a ValueError naming the text.

Lifecycle: stateless (pure functions).

Invariants: raises ValueError (bad text or port) or TypeError (neither text
nor pair), never OSError: resolving names is the caller's job; a port out of
range is never converted past five digits, and its error quotes at most 80
characters of the text.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

__all__ = ["parse_address", "split_host_port", "has_port", "strip_brackets",
           "check_port", "DEFAULT_HOST"]

DEFAULT_HOST = "127.0.0.1"


def strip_brackets(host: str) -> str:
    """``"[::1]"`` -> ``"::1"``; other hosts unchanged."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def check_port(port: Any, *, min_port: int = 1) -> int:
    """The port as an int in min_port..65535, else ValueError."""
    if not isinstance(port, int) or isinstance(port, bool) or not min_port <= port <= 65535:
        raise ValueError(f"port must be an int in {min_port}..65535, got {port!r}")
    return port


def has_port(text: str) -> bool:
    """Whether text ends in ``:digits`` (a "host:port" rather than a bare
    host or a path)."""
    _host, sep, port = text.rpartition(":")
    return bool(sep) and port.isdigit() and port.isascii()


def split_host_port(text: str, *, default_host: str = DEFAULT_HOST,
                    default_port: Optional[int] = None,
                    min_port: int = 1) -> Tuple[str, int]:
    """Parse ``"host:port"`` / ``"[v6]:port"`` (or ``"host"`` when
    default_port is given) into ``(host, port)``."""
    if not isinstance(text, str):
        raise TypeError(f"address must be a str, got {type(text).__name__}")
    if has_port(text):
        host, _sep, digits = text.rpartition(":")
        # (a peer can supply the text, e.g. a Redis MOVED reply: more than
        # five digits is out of range without converting them)
        port = int(digits) if len(digits) <= 5 else 1 << 17
    elif default_port is not None:
        host, port = text, default_port
    else:
        raise ValueError(f"address must be 'host:port' or (host, port), got {text!r}")
    if not min_port <= port <= 65535:
        raise ValueError(f"port must be in {min_port}..65535 in {text[:80]!r}"
                         f"{'...' if len(text) > 80 else ''}")
    return strip_brackets(host) or default_host, port


def parse_address(addr: Any, *, default_host: str = DEFAULT_HOST,
                  default_port: Optional[int] = None,
                  min_port: int = 1) -> Tuple[str, int]:
    """An address given as text (see `split_host_port`) or as a
    ``(host, port)`` pair (longer tuples, as IPv6 sockaddrs, are accepted:
    the rest is ignored; a pair's host is taken as given)."""
    if isinstance(addr, str):
        return split_host_port(addr, default_host=default_host,
                               default_port=default_port, min_port=min_port)
    if isinstance(addr, (tuple, list)) and len(addr) >= 2:
        return str(addr[0]), check_port(addr[1], min_port=min_port)
    raise TypeError(f"address must be 'host:port' or (host, port), got {addr!r}")
