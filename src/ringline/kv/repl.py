"""The serving side of ringline.kv replication: `WriteLog`, `Primary`,
`snapshot`. A top primary serves its own history; a replica serves (relays)
its primary's to sub-replicas (chained replication).

Owns:
  WriteLog   every write record of a shard, in execution order: handed to
             the journal (when there is one) and, once replication is
             active, to `on_frames` (a top primary's `feed`: the Backlog
             and the replicas' streams). `appended` counts the records: on
             a top primary it is the replication offset and the sequence
             number replies are tagged with (gate.py), the same count as
             the journal's when both start at 0 (they do: a primary's
             history starts with its process). On a replica it counts its
             journal's records (snapshot frames and markers included), not
             its primary's offsets.
  Primary    one shard's replication source: the history it serves
             (`replid`, `offset`: its own, new at every start, or with
             `follower` its replica's position in its primary's history),
             the Backlog (`backlog_size` bytes), the
             connected replicas (`Link`), the REPLICATE handshake, the
             per-turn frame fan-out with its stall bound (`max_pending`),
             the REPLCONF ACK channel feeding the DurabilityCursor, WAIT,
             and the INFO replication fields. As a relay (on a replica) it
             is fed by the Follower (`feed`: each live frame applied, at
             the primary's offset), refuses REPLICATE with -NOMASTERLINK
             while the replica has no position (before its first sync,
             during a snapshot), `reset`s at the replica's full sync (every
             sub-replica link and its unsent frames are dropped, the
             backlog starts at the new offset), and takes ACKs for INFO
             only (no WAIT, no ack policy: those belong to the top primary).
  snapshot   a keyspace as a list of frames that rebuild it (SET/HSET/
             RPUSH/SADD in chunks of at most SNAPSHOT_CHUNK elements, then
             PEXPIREAT for a deadline).

The protocol (docs/kv.md, "Replication"): a replica connects and sends
`REPLICATE FROM <offset> ID <replid>` (the offset it applied of the history
replid, `0 ?` when it has none). When replid is this primary's and the
backlog still holds every frame after offset, the reply is `+ACK <offset>
<replid>` and the frames after offset follow (a partial sync); otherwise
`+ACK <offset'> <replid> FULL <n>`, n snapshot frames of the keyspace as of
offset', then the live frames after offset' (a full sync): no gap, no
overlap. The replica sends `REPLCONF ACK <offset>` after applying frames.

Backpressure: frames go to every replica's connection once per loop turn
(one send each). A replica whose unsent bytes would pass `max_pending` is
disconnected (`repl_shed_replicas`); it reconnects and resumes from what it
acked, with a snapshot when the backlog has moved past it. An ACK of an
offset the primary never reached, or anything but `REPLCONF ACK` on a
replica connection, ends that connection; a malformed REPLICATE is an error
reply and the connection stays an ordinary client.

Lifecycle: the server builds a Primary per worker (on a replica, a relay
of its Follower). On a top primary the backlog exists from the start when
the policy needs it, else from the first REPLICATE (`activate`): until then
a server without replicas pays nothing for replication. A replica keeps
its relay's backlog from the start, so sub-replicas resume after either
side restarts. A Link lives from its REPLICATE until its connection ends
(or its relay resets).

Invariants: a link receives every frame after its start offset exactly
once, in order, all of one history (a relay's reset ends every link before
a frame of the new history is fed); frame o is the same write on the top
primary, its replicas and their sub-replicas (same replid, same offsets);
`cursor.replicas_acked` gets the offset acknowledged by the ack_replicas-th
most advanced connected replica (top primary only); a WAIT reply counts
only replicas whose ACK covers the client's last write.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, List, Optional

from .backlog import Backlog, frame
from .datatypes import parse_int
from .gate import Deferred
from .resp import Error, Limits
from ._fastresp import Scanner
from ..redis._resp import encode_command

__all__ = ["WriteLog", "Primary", "snapshot", "SNAPSHOT_CHUNK"]

log = logging.getLogger("ringline.kv.repl")

SNAPSHOT_CHUNK = 1024        # elements of a collection per snapshot frame
_ACK_LIMITS = Limits(max_bulk=64, max_args=8, max_inline=256, max_request=1024)
NO_POSITION = Error(b"NOMASTERLINK this replica has no position in its primary's history yet")


class WriteLog:
    """A shard's ordered write records: journal, backlog, replica streams."""

    __slots__ = ("journal", "appended", "on_frames")

    def __init__(self, journal: Any = None) -> None:
        self.journal = journal
        self.appended = 0
        self.on_frames: Optional[Callable[[bytes, int], None]] = None

    @property
    def failed(self) -> Optional[BaseException]:
        j = self.journal
        return None if j is None else j.failed

    def append(self, payload: bytes) -> int:
        return self.append_framed(frame(payload), 1)

    def append_framed(self, data: bytes, count: int) -> int:
        """count framed records; returns the last one's offset."""
        if self.journal is not None:
            self.journal.append_framed(data, count)     # raises JournalError when failed
        self.appended += count
        if self.on_frames is not None:
            self.on_frames(data, count)
        return self.appended


def snapshot(ks: Any) -> List[bytes]:
    """Frames that rebuild ks (live keys only)."""
    out: List[bytes] = []
    now = ks.clock()
    expires = ks.expires
    for key, value in list(ks.data.items()):
        at = expires.get(key)
        if at is not None and at <= now:
            continue
        t = type(value)
        if t is bytes:
            out.append(frame(encode_command((b"SET", key, value))))
        else:
            if t is dict:
                cmd, items = b"HSET", [x for kv in value.items() for x in kv]
                step = 2 * SNAPSHOT_CHUNK
            else:
                cmd, items = (b"RPUSH" if t is not set else b"SADD"), list(value)
                step = SNAPSHOT_CHUNK
            for i in range(0, len(items), step):
                out.append(frame(encode_command([cmd, key] + items[i:i + step])))
        if at is not None:
            out.append(frame(encode_command((b"PEXPIREAT", key, b"%d" % at))))
    return out


class Link:
    """One connected replica (a client connection taken over by REPLICATE)."""

    __slots__ = ("primary", "conn", "start_offset", "replid", "acked", "last_ack",
                 "addr", "scanner", "alive")

    def __init__(self, primary: "Primary", offset: int, replid: bytes) -> None:
        self.primary = primary
        self.conn: Any = None
        self.start_offset = offset
        self.replid = replid
        self.acked = 0
        self.last_ack = time.monotonic()
        self.addr = "?"
        self.scanner = Scanner(_ACK_LIMITS)
        self.alive = False

    def start(self, gate: Any) -> None:
        """Called by the connection's request path once REPLICATE's batch
        is answered: from now on the connection is a replication stream."""
        gate.close()                 # replies still held there are dropped (docs/kv.md)
        self.conn = gate.conn
        try:
            host, port = self.conn.peer_addr[:2]
            self.addr = f"{host}:{port}"
        except (OSError, ConnectionError):
            pass
        self.primary._start(self)

    def __call__(self, view: Any) -> int:
        """The connection's receive callback: REPLCONF ACK <offset> only."""
        cmds, used = self.scanner.feed(view)
        primary = self.primary
        for args in cmds:
            off = None
            if len(args) == 3 and args[0].upper() == b"REPLCONF" and args[1].upper() == b"ACK":
                off = parse_int(args[2])
            if off is None or off < 0 or off > primary.offset:
                primary.bad_acks += 1
                log.warning("kv replication: replica %s sent %r; disconnected",
                            self.addr, args[:3])
                self.close()
                return len(view)
            if off > self.acked:
                self.acked = off
            self.last_ack = time.monotonic()
        if self.scanner.error is not None:
            primary.bad_acks += 1
            self.close()
            return len(view)
        if cmds:
            primary._acked()
        return used

    def push(self, chunk: bytes) -> None:
        conn = self.conn
        queued = conn.send_queue_bytes
        if queued and queued + len(chunk) > self.primary.max_pending:
            self.primary.shed += 1
            log.warning("kv replication: replica %s stalled (%d bytes unsent); disconnected",
                        self.addr, queued)
            self.close()
            return
        try:
            conn.send_nowait(chunk)
        except ConnectionError:
            self.close()

    def close(self) -> None:
        if self.alive:
            self.alive = False
            self.primary.links.remove(self)
        if self.conn is not None:
            self.conn.abort()

    def closed(self) -> None:
        """The connection ended (the server's accept path calls this)."""
        if self.alive:
            self.alive = False
            self.primary.links.remove(self)


class Primary:
    """One shard's replication source (see the module doc): the top primary's
    own history, or, with `follower`, a replica's relay of its primary's."""

    def __init__(self, loop: Any, shard: Any, writelog: WriteLog, cursor: Any, *,
                 backlog_size: int, max_pending: int,
                 enable_writes: Callable[[], None] = lambda: None,
                 follower: Any = None) -> None:
        self.loop = loop
        self.shard = shard
        self.writelog = writelog
        self.cursor = cursor
        self.backlog_size = backlog_size
        self.max_pending = max_pending
        self.enable_writes = enable_writes
        self.follower = follower             # a replica's Follower: this Primary relays
        self._replid = os.urandom(20).hex().encode()
        self.backlog: Optional[Backlog] = None
        self.links: List[Link] = []
        self.waiters: List[list] = []        # [offset, numreplicas, Deferred, timer]
        self._pending: List[bytes] = []
        self._scheduled = False
        self.full_syncs = self.partial_syncs = self.shed = self.bad_acks = 0
        self.resets = 0                      # a relay's history changes (links dropped)

    @property
    def replid(self) -> Optional[bytes]:
        """The history served: this primary's own, or the one the replica
        follows (None while it has no position: REPLICATE is refused)."""
        return self._replid if self.follower is None else self.follower.replid

    @property
    def offset(self) -> int:
        """Frames of that history this shard holds."""
        return self.writelog.appended if self.follower is None else self.follower.offset

    def activate(self) -> None:
        """Start keeping the backlog (at the first replica, or at start)."""
        if self.backlog is None:
            self.backlog = Backlog(self.backlog_size, self.offset)
            if self.follower is None:            # a relay is fed by its Follower
                self.writelog.on_frames = self.feed
                self.enable_writes()

    def feed(self, data: bytes, count: int) -> None:
        """count frames (data) that follow `offset`: into the backlog, and to
        every link at the end of the loop turn."""
        backlog = self.backlog
        if backlog is None:
            return
        backlog.append_framed(data, count)
        if not self.links:
            return
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self.loop._at_flush(self._flush)

    def reset(self) -> None:
        """A relay's history changed (its replica took a full sync): every
        sub-replica's stream ends here, the frames not yet sent with it (no
        frame of the old history can follow one of the new on a link), and
        the backlog starts over at the new offset."""
        self._pending = []
        if self.links:
            self.resets += 1
            log.info("kv replication: full sync: dropping %d sub-replica link(s)",
                     len(self.links))
        for link in list(self.links):
            link.close()
        if self.backlog is not None:
            self.backlog.reset(self.offset)

    # -- the handshake (REPLICATE FROM <offset> ID <replid>) -------------------

    def replicate(self, session: Any, args: List[bytes]) -> Any:
        if len(args) != 5 or args[1].upper() != b"FROM" or args[3].upper() != b"ID":
            return Error(b"ERR syntax: REPLICATE FROM <offset> ID <replid>")
        offset = parse_int(args[2])
        if offset is None or offset < 0:
            return Error(b"ERR REPLICATE offset must be a non-negative integer")
        replid = args[4]
        if not 1 <= len(replid) <= 64 or not all(33 <= c < 127 for c in replid):
            return Error(b"ERR REPLICATE id must be 1 to 64 printable characters")
        if self.replid is None:
            return NO_POSITION
        self.activate()
        session.takeover = Link(self, offset, replid)
        return None

    def _start(self, link: Link) -> None:
        self._flush()                 # this turn's frames to the others first
        replid = self.replid
        if replid is None:            # (REPLICATE and _start run in one callback)
            link.conn.abort()
            return
        offset = self.offset
        data = None
        if link.replid == replid and link.start_offset <= offset:
            data = self.backlog.since(link.start_offset)     # type: ignore[union-attr]
        if data is not None:
            head = b"+ACK %d %s\r\n" % (link.start_offset, replid)
            self.partial_syncs += 1
            link.acked = link.start_offset
        else:
            frames = snapshot(self.shard.ks)
            head = b"+ACK %d %s FULL %d\r\n" % (offset, replid, len(frames))
            data = b"".join(frames)
            self.full_syncs += 1
            log.info("kv replication: full sync of %s at offset %d (%d frames, %d bytes)",
                     link.addr, offset, len(frames), len(data))
        try:
            link.conn.send_nowait(head + data if data else head)
        except ConnectionError:
            link.conn.abort()
            return
        link.alive = True
        self.links.append(link)

    # -- streaming ---------------------------------------------------------

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        chunk = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        for link in list(self.links):
            link.push(chunk)

    # -- acknowledgements and WAIT -----------------------------------------

    def _acked(self) -> None:
        if self.follower is not None:      # a relay: acks show in INFO; no policy, no WAIT
            return
        k = self.cursor.ack_replicas
        if len(self.links) >= k:
            acks = sorted((link.acked for link in self.links), reverse=True)
            self.cursor.replicas_acked(acks[k - 1])
        if self.waiters:
            self._prune()
            for w in list(self.waiters):
                if self.count(w[0]) >= w[1]:
                    self._resolve(w)

    def count(self, offset: int) -> int:
        return sum(1 for link in self.links if link.acked >= offset)

    def wait(self, session: Any, args: List[bytes]) -> Any:
        n = parse_int(args[1])
        timeout = parse_int(args[2])
        if n is None or timeout is None:
            return Error(b"ERR value is not an integer or out of range")
        if timeout < 0:
            return Error(b"ERR timeout is negative")
        offset = session.woff
        got = self.count(offset)
        if got >= n:
            return got
        self._prune()
        w: list = [offset, n, Deferred(), None]
        if timeout:
            w[3] = self.loop.call_later(timeout / 1000, self._resolve, w)
        self.waiters.append(w)
        return w[2]

    def _prune(self) -> None:
        """Forget the waiters of connections that ended (WAIT 0 of a client
        that went away would otherwise stay until an ACK)."""
        dead = [w for w in self.waiters if w[2].gate is not None and w[2].gate.closed]
        for w in dead:
            self._resolve(w)

    def _resolve(self, w: list) -> None:
        if w in self.waiters:
            self.waiters.remove(w)
        if w[3] is not None:
            w[3].cancel()
        w[2].resolve(b":%d\r\n" % self.count(w[0]))

    # -- INFO ----------------------------------------------------------------

    def info(self) -> List[Any]:
        """INFO replication: the whole section on a top primary; on a relay
        the sub-replica part (the Follower's info comes first)."""
        b = self.backlog
        offset = self.offset
        now = time.monotonic()
        relay = self.follower is not None
        out: List[Any] = [] if relay else [("role", "master")]
        out.append(("connected_slaves", len(self.links)))
        for i, link in enumerate(self.links):
            host, _, port = link.addr.rpartition(":")
            out.append((f"slave{i}", f"ip={host},port={port},state=online,offset={link.acked},"
                                     f"lag={offset - link.acked},"
                                     f"ack_age_ms={int((now - link.last_ack) * 1000)}"))
        if not relay:
            out += [("master_replid", self._replid.decode()), ("master_repl_offset", offset)]
        out += [("repl_backlog_active", 0 if b is None else 1),
                ("repl_backlog_size", self.backlog_size),
                ("repl_backlog_first_offset", 0 if b is None else b.start),
                ("repl_backlog_histlen", 0 if b is None else b.bytes)]
        if relay:
            out += [("repl_served_full_syncs", self.full_syncs),
                    ("repl_served_partial_syncs", self.partial_syncs),
                    ("repl_relay_resets", self.resets)]
        else:
            out += [("full_syncs", self.full_syncs), ("partial_syncs", self.partial_syncs)]
        out += [("repl_shed_replicas", self.shed), ("repl_bad_acks", self.bad_acks)]
        if not relay:
            out += [("repl_ack_replicas", self.cursor.ack_replicas),
                    ("repl_acked_offset", self.cursor.replicated)]
        return out
