"""Where a ringline server listens: parsing `bind` and opening the sockets.

Owns: the `Bind` type accepted by `serve` / `launch` (``(host, port)``,
``"host:port"``, a Unix socket path, or None), its resolution to a
`BindSpec` (family + sockaddr, or a path), and the creation of the
listening TCP/Unix sockets and of the UDP sockets of `Config.udp_bind`.
Text addresses go through the package's one parser, ringline._util.addr.

Lifecycle: parsed once when the supervisor is built (errors surface from
`serve` / `launch` before anything forks); sockets are opened by the
supervisor at start and then belong to it (or to the worker they are handed
to).

Invariants: a text is a TCP address only when it ends in ``:digits`` and has
no ``/`` (anything else is a Unix path); ports are checked to lie in
0..65535 (0: the kernel picks); an empty host, ``0.0.0.0`` or ``*`` is every
IPv4 address; a socket whose setup fails is closed before the error
propagates.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Optional, Tuple, Union

from .._util.addr import check_port, has_port, split_host_port, strip_brackets

__all__ = ["Bind", "BindSpec", "parse_bind", "listening_socket", "udp_socket"]

Bind = Union[None, Tuple[str, int], str, "os.PathLike[str]"]


class BindSpec:
    """Where to listen: a TCP address (family, sockaddr) or a Unix path."""

    def __init__(self, family: int, sockaddr: Any, path: Optional[str] = None) -> None:
        self.family = family
        self.sockaddr = sockaddr
        self.path = path


def _resolve_tcp(host: str, port: int) -> BindSpec:
    try:
        check_port(port, min_port=0)
    except ValueError:
        raise ValueError(f"bind port must be an int in 0..65535, got {port!r}") from None
    host = strip_brackets(host) if host else ""
    if host in ("", "0.0.0.0", "*"):
        return BindSpec(socket.AF_INET, ("0.0.0.0", port))
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve bind address {host!r}")
    family, _type, _proto, _name, sockaddr = infos[0]
    return BindSpec(family, sockaddr)


def parse_bind(bind: Bind) -> Optional[BindSpec]:
    if bind is None:
        return None
    if isinstance(bind, tuple):
        if len(bind) != 2 or not isinstance(bind[0], str):
            raise TypeError(f"bind must be (host, port), 'host:port', a Unix path or "
                            f"None, got {bind!r}")
        return _resolve_tcp(bind[0], bind[1])
    if isinstance(bind, os.PathLike):
        bind = os.fspath(bind)
    if isinstance(bind, str):
        if has_port(bind) and "/" not in bind:
            try:
                host, port = split_host_port(bind, default_host="", min_port=0)
            except ValueError:
                raise ValueError(f"bind port must be an int in 0..65535, got "
                                 f"{int(bind.rpartition(':')[2])!r}") from None
            return _resolve_tcp(host, port)
        if not bind:
            raise ValueError("bind path is empty")
        return BindSpec(socket.AF_UNIX, bind, path=bind)
    raise TypeError(f"bind must be (host, port), 'host:port', a Unix path or None, "
                    f"got {bind!r}")


def listening_socket(spec: BindSpec, sockaddr: Any, backlog: int,
                     reuse_port: bool) -> socket.socket:
    sock = socket.socket(spec.family, socket.SOCK_STREAM)
    try:
        if spec.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def udp_socket(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or "0.0.0.0", port, socket.AF_UNSPEC,
                               socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
    family, _type, _proto, _name, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise
