"""The Python face of ringline's native connection API.

Owns: outbound connections (`connect`, `connect_unix`; TLS ones are
`ringline._conn.tls.connect_tls`, built on these), the plumbing the runtime uses to turn accepted sockets into `Conn` objects
(`adopt`, `Listener`) and the per-loop knobs (`configure`). The hot paths
(receive accumulator, parse callbacks, sends, chains, guards) live in the
native core (`_conn.pxi`); this module is the cold path around them.

Lifecycle of an outbound connection: a non-blocking socket is created, its
fd handed to the ring's CONNECT (with a linked timeout in the ring on
io_uring, a loop timer on the poll backend); on success the fd is owned by a
`Conn` that starts receiving at once; on failure or cancellation the fd is
closed exactly once.

Everything here needs a running ringline loop (a `ringline.serve` worker or
`asyncio.Runner(loop_factory=ringline.new_event_loop)`).

Invariants: every fd this module creates or is handed ends up with exactly
one owner -- a `Conn`, or closed here on failure -- never both and never
neither; a call that needs a loop refuses anything but a ringline loop with
a message saying how to get one; `configure` accepts positive ints only.
"""
from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, Callable, Optional, Tuple, Union

from .. import _core
from .._core import Conn, ChainResult, ChainState, SendChain, SendParts, need_at_least, NEED_MORE
from .._errors import ConnectionClosed, ConnectionDropped, SendPoolExhausted
from .._util.addr import parse_address

__all__ = ["Conn", "connect", "connect_unix", "need_at_least",
           "NEED_MORE", "ChainResult", "SendParts", "SendChain", "ConnectionClosed",
           "ConnectionDropped", "SendPoolExhausted", "adopt", "Listener", "configure",
           "limits", "stats"]

Address = Union[Tuple[str, int], str]


def _running_loop(what: str) -> Any:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"ringline.{what}() needs a running ringline event loop "
                           "(inside ringline.serve or asyncio.Runner(loop_factory="
                           "ringline.new_event_loop))") from None
    if not isinstance(loop, _core.LoopCore):
        raise RuntimeError(f"ringline.{what}() needs a ringline event loop, not "
                           f"{type(loop).__module__}.{type(loop).__name__}")
    return loop


async def _connect_sockaddr(loop: Any, family: int, sockaddr: Any,
                            timeout: Optional[float]) -> Conn:
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                         | socket.SOCK_CLOEXEC)
    fd = sock.detach()
    try:
        fut, op = _core._connect_fd(loop, fd, family, sockaddr, timeout)
    except BaseException:
        os.close(fd)
        raise
    try:
        await fut
    except BaseException:
        # a CONNECT not yet submitted is voided, never run on the number
        # reused after this close; a submitted one holds its own reference
        # to the socket; the op keeps the address memory until it completes
        _core._cancel_connect(op)
        os.close(fd)
        raise
    return _core._adopt_fd(loop, fd, family)


async def connect(addr: Address, timeout: Optional[float] = None) -> Conn:
    """Open a TCP connection; the timeout is enforced in the ring. Raises
    TimeoutError, ConnectionRefusedError or OSError naming the address."""
    loop = _running_loop("connect")
    host, port = parse_address(addr)
    deadline = None if timeout is None else loop.time() + timeout
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}, {port}) returned nothing")
    errors = []
    for family, _type, _proto, _cname, sockaddr in infos:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            return await _connect_sockaddr(loop, family, sockaddr, left)
        except (OSError, TimeoutError) as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"connect to {host}:{port} failed: "
                  + "; ".join(str(e) for e in errors))


async def connect_unix(path: Union[str, bytes, os.PathLike],
                       timeout: Optional[float] = None) -> Conn:
    """Open a Unix stream connection to path."""
    loop = _running_loop("connect_unix")
    return await _connect_sockaddr(loop, socket.AF_UNIX, os.fsdecode(path)
                                   if not isinstance(path, bytes) else path, timeout)


def adopt(loop: Any, sock: socket.socket) -> Conn:
    """Wrap a connected socket in a Conn on loop; the Conn owns the fd from
    now on (the socket object is detached)."""
    if not isinstance(loop, _core.LoopCore):
        raise TypeError("adopt() needs a ringline loop")
    family = sock.family
    sock.setblocking(False)
    fd = sock.detach()
    return _core._adopt_fd(loop, fd, int(family))


def adopt_fd(loop: Any, fd: int, family: int = socket.AF_INET) -> Conn:
    """Wrap a connected non-blocking socket fd (owned by ringline from now on)."""
    return _core._adopt_fd(loop, fd, int(family))


class Listener:
    """A multishot ACCEPT on a listening socket: on_fd(fd) runs for each
    accepted connection (fd non-blocking and close-on-exec). close() stops
    accepting; the listening socket stays the caller's."""

    def __init__(self, loop: Any, sock: socket.socket, on_fd: Callable[[int], Any]) -> None:
        if not isinstance(loop, _core.LoopCore):
            raise TypeError("Listener needs a ringline loop")
        if not callable(on_fd):
            raise TypeError("on_fd must be callable")
        self._sock = sock
        self._loop = loop
        sock.setblocking(False)     # the poll backend accepts with accept4()
        self._op = _core._listen(loop, sock, on_fd)

    @property
    def active(self) -> bool:
        return bool(_core._listen_active(self._op))

    def close(self) -> None:
        """Stop accepting. The cancellation reaches the kernel at once, so
        the caller may close the listening socket right after."""
        _core._listen_stop(self._op)
        loop = self._op_loop()
        if loop is not None and not loop.is_closed():
            loop._submit_pending()

    def _op_loop(self) -> Any:
        return self._loop


def configure(loop: Any, *, max_send_queue: Optional[int] = None,
              recv_accumulator_cap: Optional[int] = None,
              send_zc_threshold: Optional[int] = None,
              max_connections: Optional[int] = None,
              send_pool_limit: Optional[int] = None) -> None:
    """Set the native connection knobs of one loop (the runtime applies its
    Config here; plain asyncio programs get the defaults)."""
    table = _core._conn_table(loop)
    for name, value, attr in (("max_send_queue", max_send_queue, "max_send_queue"),
                              ("recv_accumulator_cap", recv_accumulator_cap, "recv_cap"),
                              ("send_zc_threshold", send_zc_threshold, "zc_threshold"),
                              ("max_connections", max_connections, "max_connections"),
                              ("send_pool_limit", send_pool_limit, "pool_limit")):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
        setattr(table, attr, value)


def limits(loop: Any = None) -> dict:
    """The native connection limits of a loop (the running one by default):
    max_send_queue, recv_accumulator_cap, send_zc_threshold, max_connections,
    send_pool_limit."""
    if loop is None:
        loop = _running_loop("limits")
    t = _core._conn_table(loop)
    return {"max_send_queue": t.max_send_queue, "recv_accumulator_cap": t.recv_cap,
            "send_zc_threshold": t.zc_threshold, "max_connections": t.max_connections,
            "send_pool_limit": t.pool_limit}


def stats(loop: Any = None) -> dict:
    """Counters of the native connections of a loop (the running one by
    default): live, opened, closed, dropped_slow, refused, parts_copied,
    parts_zc, zc_guard_sends, chains, chunk_copies, recv_pauses, ..."""
    if loop is None:
        loop = _running_loop("stats")
    return _core._conn_table(loop).stats()
