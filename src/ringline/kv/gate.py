"""`ReplyGate` and `DurabilityCursor`: replies held back, per connection and
in order, until the durability cursor has passed the sequence number they
depend on (melin's response stage, on ringline's Conn).

Owns:
  DurabilityCursor  one per server (worker): the policy (`none`, `disk`,
                    `replica` or `disk+replica`), the two sources it
                    combines (`disk`: the journal's fsync'd count, moved by
                    `advance(pos)`; `replicated`: the offset k replicas
                    acknowledged, moved by `replicas_acked(pos)`),
                    `position` (the highest sequence number durable under
                    the policy: the minimum of the sources the policy
                    names) and the set of gates holding replies; a move of
                    the position releases every gate that can now send.
  Deferred          a reply not known yet (WAIT): it holds its place in a
                    gate's order until `resolve(reply)`.
  ReplyGate         one per connection: the replies produced but not yet
                    releasable, each with the sequence number it waits for,
                    their byte count, and the slow-client cap.

How a server uses them: a write is appended to the journal and gets a
sequence number; every reply is tagged with the journal's `appended` count
at the time it is produced (a read that saw a not-yet-durable write waits
too, or a client could observe a value a crash then loses). `push(data,
seq)` sends at once when nothing is held and `seq <= position` (always, with
policy `none`); else it queues. When the journal's group commit finishes,
`cursor.advance(synced)` releases, for each waiting gate, every reply now
covered, joined into one `send_nowait`: the connection flushes it with one
send in this same loop turn (the commit runs in the loop's pre-flush hook),
so a turn costs one fsync and one send per connection however many replies
it released.

Slow clients: the cap bounds what a connection may have outstanding: bytes
held by the gate plus bytes queued in the Conn and not yet sent. A push
that would pass it while earlier replies are still outstanding aborts the
connection (counted in `dropped`): the client is not reading. One reply
alone may be bigger than the cap (a client that reads is never dropped for
a large value). Other connections are unaffected (they have gates of their
own). The Conn's own `max_send_queue` stays as the hard bound.

Lifecycle: a gate is created when its connection is accepted and closed
(`close()`: its held replies are dropped, it leaves the cursor's set) when
the connection ends. With `replica` policies the sequence numbers are the
replication offsets (ringline.kv.repl.WriteLog counts both), and the
replication primary calls `replicas_acked(offset)` with the offset the k-th
most advanced replica acknowledged.

Invariants: a connection's replies leave in the order they were pushed; no
reply leaves before `position >= seq`, nor before every Deferred pushed
ahead of it was resolved; a gate is in the cursor's waiting set exactly
while it holds replies; `position` never moves backwards.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Set, Tuple

__all__ = ["DurabilityCursor", "ReplyGate", "Deferred", "POLICIES"]

POLICIES = ("none", "disk", "replica", "disk+replica")
DEFERRED_BYTES = 64         # what a Deferred counts against the slow-client cap


class DurabilityCursor:
    """The durable position under one policy, and the gates waiting on it."""

    __slots__ = ("policy", "position", "waiting", "dropped", "released", "held_max",
                 "ack_replicas", "disk", "replicated", "_needs_disk", "_needs_replicas")

    def __init__(self, policy: str = "none", ack_replicas: int = 1) -> None:
        if policy not in POLICIES:
            raise ValueError(f"ack policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if ack_replicas < 1:
            raise ValueError("ack_replicas must be at least 1")
        self.policy = policy
        self.ack_replicas = ack_replicas
        self._needs_disk = policy != "replica"       # none: the journal's count, ungated
        self._needs_replicas = "replica" in policy
        self.position = 0
        self.disk = 0              # what the journal reported durable
        self.replicated = 0        # what ack_replicas replicas acknowledged
        self.waiting: Set["ReplyGate"] = set()
        self.dropped = 0           # connections dropped at the cap
        self.released = 0          # replies released after waiting
        self.held_max = 0          # most bytes one gate held

    @property
    def gated(self) -> bool:
        return self.policy != "none"

    def fail(self) -> None:
        """The durable position can never move again (the journal failed):
        abort every connection holding replies, so no client waits forever
        and none is told a write is durable."""
        for gate in list(self.waiting):
            gate.close()
            gate.conn.abort()

    def advance(self, position: int) -> None:
        """The journal made everything up to position durable."""
        if position > self.disk:
            self.disk = position
            self._move()

    def replicas_acked(self, position: int) -> None:
        """ack_replicas replicas acknowledged everything up to position."""
        if position > self.replicated:
            self.replicated = position
            self._move()

    def _move(self) -> None:
        if self._needs_disk:
            pos = min(self.disk, self.replicated) if self._needs_replicas else self.disk
        else:
            pos = self.replicated
        if pos <= self.position:
            return
        self.position = pos
        if self.waiting:
            for gate in list(self.waiting):
                gate.release()


class Deferred:
    """A reply computed later (WAIT): pushed into a gate with
    `ReplyGate.defer`, it keeps its place in the connection's order; the
    replies behind it wait until `resolve(reply)`."""

    __slots__ = ("gate", "reply")

    def __init__(self) -> None:
        self.gate: Any = None
        self.reply: Any = None

    def resolve(self, reply: bytes) -> None:
        if self.reply is not None:
            return
        self.reply = reply
        gate = self.gate
        if gate is not None and not gate.closed:
            gate.release()


class ReplyGate:
    """One connection's ordered, durability-gated replies."""

    __slots__ = ("conn", "cursor", "cap", "held", "held_bytes", "closed", "closing")

    def __init__(self, conn: Any, cursor: DurabilityCursor, cap: int = 8 << 20) -> None:
        self.conn = conn
        self.cursor = cursor
        self.cap = cap
        self.held: Deque[Tuple[int, bytes]] = deque()
        self.held_bytes = 0
        self.closed = False
        self.closing = False

    def push(self, data: bytes, seq: int) -> bool:
        """Queue data behind seq; False when the connection was dropped (at
        the cap, or it is gone)."""
        if self.closed:
            return False
        cursor = self.cursor
        if not self.held and seq <= cursor.position:
            return self._send(data)
        before = self.held_bytes + self.conn.send_queue_bytes
        if before and before + len(data) > self.cap:
            self._drop()
            return False
        self.held.append((seq, data))
        self.held_bytes += len(data)
        if self.held_bytes > cursor.held_max:
            cursor.held_max = self.held_bytes
        cursor.waiting.add(self)
        return True

    def defer(self, deferred: Deferred) -> bool:
        """Hold deferred's place: what is pushed after it waits for it. It
        counts DEFERRED_BYTES against the cap (a client pipelining WAITs
        is bounded like one pipelining anything else)."""
        if self.closed:
            return False
        before = self.held_bytes + self.conn.send_queue_bytes
        if before and before + DEFERRED_BYTES > self.cap:
            self._drop()
            return False
        deferred.gate = self
        self.held.append((0, deferred))      # type: ignore[arg-type]
        self.held_bytes += DEFERRED_BYTES
        self.cursor.waiting.add(self)
        return True

    def release(self) -> None:
        """Send every held reply the cursor now covers, in one send."""
        held = self.held
        pos = self.cursor.position
        out = []
        while held and held[0][0] <= pos:
            data = held[0][1]
            if type(data) is not bytes:           # a Deferred
                if data.reply is None:
                    break
                held.popleft()
                out.append(data.reply)
                self.held_bytes -= DEFERRED_BYTES
                continue
            held.popleft()
            out.append(data)
            self.held_bytes -= len(data)
        if not held:
            self.cursor.waiting.discard(self)
        if out:
            self.cursor.released += len(out)
            self._send(out[0] if len(out) == 1 else b"".join(out), False)
        if self.closing and not held:
            self.close_after_sent()

    def close_after_sent(self) -> None:
        """Close the connection gracefully once every held reply is
        released (QUIT, or after a protocol error's reply)."""
        self.closing = True
        if not self.held and not self.closed:
            self.closed = True
            self.cursor.waiting.discard(self)
            try:
                self.conn.close()
            except ConnectionError:
                pass

    def _send(self, data: bytes, check: bool = True) -> bool:
        conn = self.conn
        if check:
            before = conn.send_queue_bytes
            if before and before + len(data) > self.cap:
                self._drop()
                return False
        try:
            conn.send_nowait(data)
        except ConnectionError:
            self.close()
            return False
        return True

    def _drop(self) -> None:
        self.cursor.dropped += 1
        self.close()
        self.conn.abort()

    def close(self) -> None:
        self.closed = True
        self.held.clear()
        self.held_bytes = 0
        self.cursor.waiting.discard(self)
