"""UDP sockets for the native runtime: `ringline.UdpSocket`.

Owns: one datagram socket, its receive buffer for `with_datagram`, and its
bounded send queue. Receives and sends go through the loop's `sock_recvfrom`,
`sock_recvfrom_into` and `sock_sendto` (RECVMSG / SENDMSG in the ring on the
io_uring backend, the poll driver otherwise).

Lifecycle: OPEN -> CLOSED. `send_to()` queues (no wait) and a drainer task,
alive only while the queue is not empty, submits the queued datagrams (a
batch of them per loop iteration). `close()` drops unsent datagrams, wakes
every waiter with `ConnectionClosed` (a pending receive is cancelled in the
ring and its caller gets ConnectionClosed instead of CancelledError) and
closes the fd one loop iteration after the last receive returned, so the
cancellation reaches the driver before the fd number can be reused.

Invariants: queued plus in-flight bytes never exceed `max_send_queue`
(`send_to` raises `QueueFull` instead; `send_ready()` waits until the queue
is down to half); bad input (not bytes-like, oversized, a malformed or
non-numeric address) raises at once, before anything is queued; the view
handed to a `with_datagram` callback is released when the callback returns.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Any, Callable, Deque, List, Optional, Set, Tuple, TypeVar

from .._errors import ConnectionClosed, QueueFull

__all__ = ["UdpSocket"]

log = logging.getLogger("ringline.udp")

_T = TypeVar("_T")

# largest UDP payloads (IPv4: 65535 - 20 - 8; IPv6 without jumbograms)
_MAX_PAYLOAD = {socket.AF_INET: 65507, socket.AF_INET6: 65527}
_SEND_BATCH = 64
_NO_ADDR = object()


def _check_address(family: int, addr: Any) -> Tuple[Any, ...]:
    if family == socket.AF_INET:
        if (type(addr) is tuple and len(addr) == 2 and type(addr[0]) is str
                and type(addr[1]) is int and 0 < addr[1] < 65536):
            try:
                socket.inet_pton(socket.AF_INET, addr[0])
                return addr
            except OSError:
                pass
        raise ValueError(f"send_to() needs a numeric IPv4 address (host, port) "
                         f"with port in 1..65535, got {addr!r}")
    if family == socket.AF_INET6:
        if (type(addr) is tuple and 2 <= len(addr) <= 4 and type(addr[0]) is str
                and type(addr[1]) is int and 0 < addr[1] < 65536):
            try:
                socket.inet_pton(socket.AF_INET6, addr[0].split("%", 1)[0])
                return addr
            except OSError:
                pass
        raise ValueError(f"send_to() needs a numeric IPv6 address (host, port[, "
                         f"flowinfo, scope_id]) with port in 1..65535, got {addr!r}")
    if family == socket.AF_UNIX:
        if isinstance(addr, (str, bytes)) and addr:
            return addr
        raise ValueError(f"send_to() needs a Unix socket path, got {addr!r}")
    return addr


class UdpSocket:
    """A datagram socket served by a ringline loop.

    `UdpSocket.bind(("127.0.0.1", 0))` creates one; the runtime hands one per
    `Config.udp_bind` address to `Handler.on_udp_bind`. Every method needs the
    running loop the socket was created on.
    """

    def __init__(self, sock: socket.socket, *, loop: Any = None,
                 max_datagram: int = 65536, max_send_queue: int = 4 << 20) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"UdpSocket needs a SOCK_DGRAM socket, got {sock!r}")
        if not isinstance(max_datagram, int) or not 1 <= max_datagram <= 1 << 20:
            raise ValueError(f"max_datagram must be an int in 1..1048576, "
                             f"got {max_datagram!r}")
        if not isinstance(max_send_queue, int) or max_send_queue < 1:
            raise ValueError(f"max_send_queue must be a positive int, "
                             f"got {max_send_queue!r}")
        sock.setblocking(False)
        self._sock = sock
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._family = sock.family
        self._local_addr = sock.getsockname()
        self._max_datagram = max_datagram
        self._max_payload = _MAX_PAYLOAD.get(sock.family, 1 << 20)
        self._buf = bytearray(max_datagram)
        self._buf_busy = False
        self._queue: Deque[Tuple[bytes, Any]] = collections.deque()
        self._queued_bytes = 0
        self._limit = max_send_queue
        self._low_water = max_send_queue // 2
        self._drainer: Optional[asyncio.Task] = None
        self._ready_waiters: List[asyncio.Future] = []
        self._receivers = 0
        self._waiting: Set[asyncio.Task] = set()
        self._cancelled_by_close: Set[asyncio.Task] = set()
        self._closed = False
        self._fd_closed = False
        self._last_addr: Any = _NO_ADDR
        self.sent = 0
        self.send_errors = 0
        self.last_send_error: Optional[BaseException] = None

    @classmethod
    def bind(cls, addr: Tuple[str, int], *, reuse_port: bool = False,
             loop: Any = None, **kwargs: Any) -> "UdpSocket":
        """Create a UDP socket bound to addr (host, port); port 0 picks one."""
        host, port = addr
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            return cls(sock, loop=loop, **kwargs)
        except BaseException:
            sock.close()
            raise

    # -- properties ------------------------------------------------------

    @property
    def local_addr(self) -> Any:
        """The address the socket is bound to."""
        return self._local_addr

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        """Bytes queued or in flight (bounded by max_send_queue)."""
        return self._queued_bytes

    def fileno(self) -> int:
        return -1 if self._closed else self._sock.fileno()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<UdpSocket {state} {self._local_addr!r}>"

    # -- receiving -------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionClosed("UDP socket is closed")

    def _receive_started(self) -> Optional[asyncio.Task]:
        self._check_open()
        task = asyncio.current_task(self._loop)
        self._receivers += 1
        if task is not None:
            self._waiting.add(task)
        return task

    def _receive_ended(self, task: Optional[asyncio.Task]) -> None:
        self._receivers -= 1
        if task is not None:
            self._waiting.discard(task)
            self._cancelled_by_close.discard(task)
        if self._closed and self._receivers == 0:
            # one loop iteration later: the cancel of the receive reaches the
            # driver before the fd number can be reused
            self._loop.call_soon(self._close_fd)

    def _receive_failed(self, task: Optional[asyncio.Task], exc: BaseException) -> None:
        """Turn the failure of a receive interrupted by close() into
        ConnectionClosed; anything else propagates."""
        if isinstance(exc, asyncio.CancelledError):
            if task is not None and task in self._cancelled_by_close:
                task.uncancel()
                raise ConnectionClosed("UDP socket is closed") from None
            raise exc
        if self._closed:
            raise ConnectionClosed("UDP socket is closed") from exc
        raise exc

    async def recv_from(self) -> Tuple[bytes, Any]:
        """Wait for the next datagram: (data, sender address)."""
        task = self._receive_started()
        try:
            data, addr = await self._loop.sock_recvfrom(self._sock, self._max_datagram)
        except (asyncio.CancelledError, OSError) as exc:
            self._receive_failed(task, exc)
            raise
        finally:
            self._receive_ended(task)
        if self._closed:
            raise ConnectionClosed("UDP socket is closed")
        return data, addr

    async def with_datagram(self, fn: Callable[[memoryview, Any], _T]) -> _T:
        """Wait for the next datagram and return fn(view, sender address).
        The view (and any slice of it) is valid only while fn runs."""
        task = self._receive_started()
        if self._buf_busy:
            buf = bytearray(self._max_datagram)   # a concurrent caller has ours
            own = False
        else:
            buf = self._buf
            self._buf_busy = own = True
        try:
            try:
                nbytes, addr = await self._loop.sock_recvfrom_into(self._sock, buf)
            except (asyncio.CancelledError, OSError) as exc:
                self._receive_failed(task, exc)
                raise
            if self._closed:
                raise ConnectionClosed("UDP socket is closed")
            whole = memoryview(buf)
            view = whole[:nbytes]
            try:
                return fn(view, addr)
            finally:
                try:
                    view.release()
                    whole.release()
                except BufferError:
                    # fn kept an export of the view: leave that memory to it
                    if own:
                        self._buf = bytearray(self._max_datagram)
        finally:
            if own:
                self._buf_busy = False
            self._receive_ended(task)

    # -- sending ---------------------------------------------------------

    def send_to(self, data: Any, addr: Any) -> None:
        """Queue one datagram for addr (a numeric address); never waits.
        Raises TypeError/ValueError on bad input, QueueFull when the send
        queue is over max_send_queue (await send_ready() first),
        ConnectionClosed after close()."""
        self._check_open()
        if type(data) is not bytes:
            try:
                data = bytes(memoryview(data))
            except TypeError:
                raise TypeError(f"send_to() data must be bytes-like, "
                                f"got {type(data).__name__}") from None
        size = len(data)
        if size > self._max_payload:
            raise ValueError(f"datagram of {size} bytes is larger than the "
                             f"{self._max_payload} bytes UDP allows")
        if addr is not self._last_addr:
            _check_address(self._family, addr)
            self._last_addr = addr
        if self._queued_bytes and self._queued_bytes + size > self._limit:
            raise QueueFull(f"UDP send queue is full ({self._queued_bytes} bytes "
                            f"queued, max_send_queue={self._limit})")
        self._queue.append((data, addr))
        self._queued_bytes += size
        if self._drainer is None:
            self._drainer = self._loop.create_task(self._drain())

    def can_send(self) -> bool:
        """True when send_ready() would not wait."""
        return self._queued_bytes <= self._low_water

    async def send_ready(self) -> None:
        """Wait until the send queue is down to half of max_send_queue."""
        self._check_open()
        if self._queued_bytes <= self._low_water:
            return
        fut = self._loop.create_future()
        self._ready_waiters.append(fut)
        await fut

    def _wake_ready(self, exc: Optional[BaseException] = None) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for fut in waiters:
            if fut.done():
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    def _send_failed(self, exc: BaseException) -> None:
        self.send_errors += 1
        self.last_send_error = exc
        log.debug("UDP send from %r failed: %r", self._local_addr, exc)

    async def _drain(self) -> None:
        loop, sock, queue = self._loop, self._sock, self._queue
        try:
            while queue and not self._closed:
                if len(queue) == 1:
                    data, addr = queue.popleft()
                    try:
                        await loop.sock_sendto(sock, data, addr)
                        self.sent += 1
                    except OSError as exc:
                        self._send_failed(exc)
                    self._queued_bytes -= len(data)
                else:
                    batch = [queue.popleft()
                             for _ in range(min(len(queue), _SEND_BATCH))]
                    # one task per datagram: all of them reach the kernel in
                    # the same loop iteration
                    results = await asyncio.gather(
                        *[loop.sock_sendto(sock, d, a) for d, a in batch],
                        return_exceptions=True)
                    for (data, _addr), res in zip(batch, results):
                        self._queued_bytes -= len(data)
                        if isinstance(res, BaseException):
                            if not isinstance(res, OSError):
                                raise res
                            self._send_failed(res)
                        else:
                            self.sent += 1
                if self._ready_waiters and self._queued_bytes <= self._low_water:
                    self._wake_ready()
        finally:
            self._drainer = None
            if self._closed:
                self._wake_ready(ConnectionClosed("UDP socket is closed"))
            else:
                self._wake_ready()

    # -- closing ---------------------------------------------------------

    def _close_fd(self) -> None:
        if not self._fd_closed:
            self._fd_closed = True
            self._sock.close()

    def close(self) -> None:
        """Close the socket: unsent datagrams are dropped, waiters get
        ConnectionClosed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._queued_bytes = 0
        if self._drainer is not None:
            self._drainer.cancel()
        self._wake_ready(ConnectionClosed("UDP socket is closed"))
        if self._receivers:
            # pending receives end with ConnectionClosed; the fd is closed
            # once the last of them has returned
            for task in self._waiting:
                self._cancelled_by_close.add(task)
                task.cancel()
        else:
            self._close_fd()
