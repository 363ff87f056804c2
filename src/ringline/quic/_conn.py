"""One QUIC connection driven on a ringline loop: ``QuicConn``.

Owns the engine's ``QuicConnection`` (qh3 or aioquic, sans-IO), its inbox of
received datagrams, its one timer handle and the hand-off of the engine's
events to the layer above (``on_event(event)``: HTTP/3 or an application).

Each turn (``process``, run by the endpoint once per loop turn when the
connection is dirty): the whole inbox goes to the engine in one call
(``receive_many_datagrams`` on qh3, a loop of ``receive_datagram`` on
aioquic), every event is dispatched, ``datagrams_to_send`` is collected once
and handed to the endpoint as one batch, and the timer is re-armed -- only
when the engine's deadline changed (``call_at``; one handle per connection).

Backpressure (``pause()`` / ``resume()``): neither engine lets the
application hold back flow-control credit (both reopen a stream's window as
soon as the data became an event), so a layer above that holds too many
unread bytes pauses the connection instead: datagrams then stay in the inbox
unprocessed (up to ``max_inbox``; beyond it they are dropped and the peer's
loss recovery sends them again), no credit is returned, and the peer stops
within one connection window. Timers keep running while paused.

Lifecycle: created (client: ``connect()`` already called; server: by the
endpoint for a new peer) -> handshake (``handshake`` future) -> open ->
terminated (``ConnectionTerminated`` from the engine, the socket lost, or
``close()``): ``closed`` resolves with the termination event, the timer is
cancelled, the endpoint forgets the connection. Invariants: at most one
timer handle is armed; the events of one turn are dispatched in order before
its datagrams are sent; ``on_event`` sees ``ConnectionTerminated`` once.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Optional

from ._engine import Engine

__all__ = ["QuicConn"]

_MAX_INBOX = 4096          # datagrams held while paused (about 5 MiB)


class QuicConn:
    """See the module docstring."""

    __slots__ = ("endpoint", "quic", "addr", "send_addr", "engine", "on_event", "loop",
                 "inbox", "dirty", "paused", "max_inbox", "dropped", "timer", "timer_at",
                 "handshake", "closed", "terminated", "_many", "_ev", "alpn", "on_turn", "pending",
                 "transmit_errors", "transmit_error", "early")

    def __init__(self, endpoint: Any, quic: Any, addr: Any, engine: Engine,
                 on_event: Optional[Callable[[Any], None]] = None,
                 send_addr: Any = None) -> None:
        self.endpoint = endpoint
        self.quic = quic
        self.addr = addr                  # the peer, as the engine knows it
        self.send_addr = send_addr        # None on a connected socket
        self.engine = engine
        self.on_event = on_event
        self.loop = endpoint.loop
        self.inbox: List[bytes] = []
        self.dirty = False
        self.paused = False
        self.max_inbox = _MAX_INBOX
        self.dropped = 0
        self.timer: Optional[asyncio.TimerHandle] = None
        self.timer_at: Optional[float] = None
        self.handshake: asyncio.Future = self.loop.create_future()
        self.closed: asyncio.Future = self.loop.create_future()
        self.terminated: Any = None
        self._many = engine.many
        self._ev = engine.events
        self.alpn: Optional[str] = None
        # called once per turn after the events, before the datagrams are
        # collected (a sender tops up its streams there)
        self.on_turn: Optional[Callable[[], None]] = None
        # events that came before a handler was set (the server's SETTINGS
        # and QPACK streams arrive with the end of the handshake)
        self.pending: List[Any] = []
        self.transmit_errors = 0
        self.transmit_error: Optional[BaseException] = None     # the last one
        self.early = False       # returned by connect() before the handshake (0-RTT)

    # -- driving --

    def kick(self) -> None:
        """Transmit what the application queued, in this loop turn's batch."""
        if self.terminated is None:
            self.endpoint.want(self)

    def process(self, now: float) -> None:
        inbox = self.inbox
        if inbox and not self.paused and self.terminated is None:
            self.inbox = []
            q = self.quic
            addr = self.addr
            try:
                if self._many and len(inbox) > 1:
                    q.receive_many_datagrams(inbox, addr, now)
                else:
                    for d in inbox:
                        q.receive_datagram(d, addr, now)
            except Exception as exc:     # the engine broke: this connection ends
                self._broken(exc)
                return
        self._drain(now)

    def _broken(self, exc: BaseException) -> None:
        try:
            self.quic.close(error_code=0x1, reason_phrase=f"internal error: {exc}"[:100])
            dg = self.quic.datagrams_to_send(self.loop.time())
            if dg:
                self.endpoint.send(dg, self.send_addr)
        except Exception:
            pass
        self._terminate(self._ev.ConnectionTerminated(
            error_code=0x1, frame_type=None, reason_phrase=f"QUIC engine error: {exc}"))

    def _drain(self, now: float) -> None:
        q = self.quic
        e = q.next_event()
        while e is not None:
            self._dispatch(e)
            e = q.next_event()
        if not self.handshake.done():
            # a failed handshake (a bad certificate...) is reported by the
            # engine only after its closing period (3 PTOs): tell at once
            closing = getattr(q, "_close_event", None)
            if closing is not None:
                self.handshake.set_result(closing)
        if self.on_turn is not None and self.terminated is None:
            self.on_turn()
        try:
            dg = q.datagrams_to_send(now)
        except Exception as exc:
            # qh3 2.1 sometimes fails one poll ("packet builder capacity
            # exhausted") and succeeds on the next: what it built is lost
            # and recovered as packet loss; try again in a millisecond
            self.transmit_errors += 1
            self.transmit_error = exc
            if self.transmit_errors > 10000:
                self._broken(exc)
                return
            dg = None
            self.loop.call_later(0.001, self.kick)
        if dg:
            self.endpoint.send(dg, self.send_addr)
        if self.terminated is not None:
            return
        when = q.get_timer()
        if when != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.timer_at = when
            if when is not None:
                self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        now = self.loop.time()
        try:
            self.quic.handle_timer(now)
        except Exception as exc:
            self._broken(exc)
            return
        self._drain(now)

    def _dispatch(self, e: Any) -> None:
        ev = self._ev
        t = type(e)
        if t is ev.HandshakeCompleted:
            self.alpn = e.alpn_protocol
            if not self.handshake.done():
                self.handshake.set_result(e)
        elif t is ev.ConnectionTerminated:
            self._terminate(e)
            return
        cb = self.on_event
        if cb is not None:
            cb(e)
        else:
            self.pending.append(e)

    def set_handler(self, on_event: Callable[[Any], None]) -> None:
        """Hand the events to ``on_event`` from now on, first those that
        came before it was set."""
        self.on_event = on_event
        pending, self.pending = self.pending, []
        for e in pending:
            on_event(e)

    def _terminate(self, e: Any) -> None:
        if self.terminated is not None:
            return
        self.terminated = e
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inbox = []
        if not self.handshake.done():
            self.handshake.set_result(e)     # the caller checks terminated
        if not self.closed.done():
            self.closed.set_result(e)
        self.endpoint.forget(self)
        cb = self.on_event
        if cb is not None:
            cb(e)

    def socket_lost(self) -> None:
        self._terminate(self._ev.ConnectionTerminated(
            error_code=0, frame_type=None, reason_phrase="the UDP socket was closed"))

    # -- backpressure --

    def pause(self) -> None:
        """Stop handing received datagrams to the engine (see the notes)."""
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.inbox:
                self.endpoint.want(self)

    # -- ending --

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Send CONNECTION_CLOSE now; ``closed`` resolves after the engine's
        draining period (or at once if the socket goes first)."""
        if self.terminated is not None:
            return
        self.quic.close(error_code=error_code, reason_phrase=reason)
        self._drain(self.loop.time())
