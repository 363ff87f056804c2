"""One UDP socket carrying QUIC: the asyncio datagram protocol between
ringline's datagram transport and the engine connections on it.

Owns ``QuicEndpoint``: the transport, the connections on the socket (one for
a client, any number keyed by peer address for a server -- connection
migration is ignored), and the loop turn that drives them. Receive: each
datagram the transport delivers (ringline: one multishot RECVMSG from the
loop's provided-buffer ring, every completion of one io_uring_enter
dispatched back to back) is appended to its connection's inbox; the first
one of a turn schedules ``_turn`` once. On a ringline loop ``_turn`` runs as
a pre-flush hook (``loop._at_flush``: at the start of the next iteration,
right before the io_uring_enter that submits what it queues); on any other
loop through ``call_soon``. ``_turn`` hands every dirty connection its whole
inbox in one engine call, dispatches the events, then collects
``datagrams_to_send`` once and sends them, all submitted by that single
io_uring_enter (on the poll backend sendmsg calls back to back).

UDP GSO (``gso``): a run of equal-size datagrams to one peer (the last may
be shorter), at most ``GSO_MAX_SEGMENTS`` and ``GSO_MAX_BYTES`` in all,
leaves as ONE SENDMSG carrying a UDP_SEGMENT control message (the
transport's ``sendto_gso``); the kernel cuts it into the datagrams. On
unless ``RINGLINE_QUIC_GSO=0``, ``open_endpoint(gso=False)``, the loop's
transport has no ``sendto_gso`` (not a ringline loop) or the socket does
not know UDP_SEGMENT (kernel < 4.18). A kernel that refuses it at use
(EIO: no checksum offload on the route; EINVAL) turns it off for the
endpoint for good (``gso_refused``): what that send carried is lost once
and recovered by the engine's loss recovery. Without GSO one SENDMSG per
datagram. Application calls (a request, a read that reopens a
window) mark their connection dirty the same way, so the datagrams of every
request made in one loop turn leave together.

Lifecycle: ``open_endpoint`` -> connection_made -> turns -> ``close()``
(closes the transport; every connection still open is told the socket is
gone). Invariants: at most one ``_turn`` is scheduled at a time; a
connection is in ``dirty`` at most once; the counters (``datagrams_in``,
``datagrams_out``, ``turns``, ``send_batches``, ``max_batch``, ``sendmsgs``, ``gso_sends``)
only grow; ``gso`` only goes from on to off.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["QuicEndpoint", "open_endpoint", "gso_default", "GSO_MAX_SEGMENTS",
           "GSO_MAX_BYTES"]

GSO_MAX_SEGMENTS = 64      # the kernel's UDP_MAX_SEGMENTS before 6.x (128 since)
GSO_MAX_BYTES = 65000      # one IP datagram: 65,535 less the IPv6 and UDP headers
_SOL_UDP = 17
_UDP_SEGMENT = 103


def gso_default() -> bool:
    """``RINGLINE_QUIC_GSO`` (default on; ``0``, ``no``, ``off``,
    ``false`` turn it off)."""
    return os.environ.get("RINGLINE_QUIC_GSO", "1").strip().lower() not in (
        "0", "no", "off", "false")


class QuicEndpoint(asyncio.DatagramProtocol):
    """See the module docstring. ``accept(addr, data)`` (servers) returns
    the connection for a datagram from a new peer, or None to drop it."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 accept: Optional[Callable[[Any, bytes], Any]] = None) -> None:
        self.loop = loop
        self.accept = accept
        self.transport: Any = None
        self.client: Any = None               # the one connection of a client socket
        self.conns: Dict[Any, Any] = {}       # server: peer address -> connection
        self.dirty: List[Any] = []
        self.scheduled = False
        hook = getattr(loop, "_at_flush", None)
        self._hook: Callable[[Callable[[], None]], Any] = hook if hook is not None \
            else loop.call_soon
        self.closed = False
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.turns = 0
        self.send_batches = 0
        self.max_batch = 0
        self.sendmsgs = 0                     # SENDMSG operations (GSO: one per run)
        self.gso = False                      # set by open_endpoint
        self.gso_sends = 0
        self.gso_refused: Optional[OSError] = None

    # -- asyncio.DatagramProtocol --

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        # the engine's congestion control bounds what is in flight; the
        # transport's write-pause signal is not needed
        transport.set_write_buffer_limits(high=1 << 30)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams_in += 1
        c = self.client
        if c is None:
            c = self.conns.get(addr)
            if c is None:
                if self.accept is None or self.closed:
                    return
                c = self.accept(addr, data)
                if c is None:
                    return
                self.conns[addr] = c
        if c.paused and len(c.inbox) >= c.max_inbox:
            c.dropped += 1          # held back too long: the peer retransmits
            return
        c.inbox.append(data)
        if not c.dirty:
            c.dirty = True
            self.dirty.append(c)
            if not self.scheduled:
                self.scheduled = True
                self._hook(self._turn)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable...) carry no QUIC meaning: the
        # engine's timers decide (loss recovery, idle timeout). A GSO send
        # the kernel refuses turns GSO off (see the module docstring).
        if self.gso and isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.EINVAL):
            self.gso = False
            self.gso_refused = exc

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.closed = True
        conns = list(self.conns.values())
        if self.client is not None:
            conns.append(self.client)
        for c in conns:
            c.socket_lost()

    # -- the turn --

    def want(self, c: Any) -> None:
        """``c`` has work (application data to send, a window to reopen):
        run it in this loop turn's batch."""
        if not c.dirty:
            c.dirty = True
            self.dirty.append(c)
            if not self.scheduled:
                self.scheduled = True
                self._hook(self._turn)

    def _turn(self) -> None:
        self.scheduled = False
        dirty = self.dirty
        if not dirty:
            return
        self.dirty = []
        self.turns += 1
        now = self.loop.time()
        for c in dirty:
            c.dirty = False
            try:
                c.process(now)
            except Exception as exc:     # a layer above failed: the others go on
                self.loop.call_exception_handler({
                    "message": "ringline.quic: a connection's event handler failed",
                    "exception": exc, "protocol": self})

    def send(self, datagrams: List[Tuple[bytes, Any]], addr: Any) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        n = len(datagrams)
        self.send_batches += 1
        self.datagrams_out += n
        if n > self.max_batch:
            self.max_batch = n
        sendto = t.sendto
        if not self.gso or n < 2:
            self.sendmsgs += n
            for data, _ in datagrams:
                sendto(data, addr)
            return
        gso = t.sendto_gso
        i = 0
        while i < n:
            first = datagrams[i][0]
            size = len(first)
            end = i + min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size)
            if end > n:
                end = n
            j = i + 1
            while j < end and len(datagrams[j][0]) == size:
                j += 1
            if j < end and len(datagrams[j][0]) < size:
                j += 1                   # a shorter one may end the run
            self.sendmsgs += 1
            if j - i == 1:
                sendto(first, addr)
            else:
                self.gso_sends += 1
                gso(b"".join([d for d, _ in datagrams[i:j]]), size, addr)
            i = j

    def forget(self, c: Any) -> None:
        if self.client is c:
            return
        addr = c.addr
        if self.conns.get(addr) is c:
            del self.conns[addr]

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def stats(self) -> Dict[str, int]:
        return {"datagrams_in": self.datagrams_in, "datagrams_out": self.datagrams_out,
                "turns": self.turns, "send_batches": self.send_batches,
                "max_batch": self.max_batch, "sendmsgs": self.sendmsgs,
                "gso_sends": self.gso_sends, "gso": int(self.gso)}


async def open_endpoint(loop: asyncio.AbstractEventLoop, *, remote: Any = None,
                        local: Any = None,
                        accept: Optional[Callable[[Any, bytes], Any]] = None,
                        gso: Optional[bool] = None) -> QuicEndpoint:
    """A UDP endpoint: connected to ``remote`` (a client; the kernel filters
    other peers) or bound to ``local`` (a server). ``gso``: None follows
    ``RINGLINE_QUIC_GSO`` (on by default) where the kernel offers it."""
    ep = QuicEndpoint(loop, accept)
    if remote is not None:
        # connected: sendto(data, None) needs no address per datagram
        await loop.create_datagram_endpoint(lambda: ep, remote_addr=remote)
    else:
        await loop.create_datagram_endpoint(lambda: ep, local_addr=local)
    sock = ep.transport.get_extra_info("socket")
    # room for a burst of the peer's congestion window while a turn runs
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        except OSError:      # pragma: no cover - capped by the system
            pass
    if (gso_default() if gso is None else gso) and hasattr(ep.transport, "sendto_gso"):
        try:
            sock.getsockopt(_SOL_UDP, _UDP_SEGMENT)    # known to this kernel
            ep.gso = True
        except OSError:      # pragma: no cover - kernel < 4.18
            pass
    return ep
