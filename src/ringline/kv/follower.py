"""The replica's side of ringline.kv replication: `Follower`.

Owns: one shard's link to its primary (`--replicaof host port`; shard i of a
server with several workers follows shard i of the primary, at the
primary's port P+1+i): connecting with backoff, the REPLICATE handshake,
applying the snapshot and the live frames to the shard's keyspace, the
replica's journal records of them, `REPLCONF ACK <offset>` after each batch
applied, and the history it follows (`replid`, `offset`: frames applied).

Chaining: the shard's `relay` (a repl.Primary serving sub-replicas) gets
every live frame applied (`feed`, same bytes, same offset) and is `reset`
at a full sync's handshake (the sub-replicas' links end before the
keyspace is flushed) and again when the snapshot is in (its backlog starts
at the new offset). A primary that is itself a replica without a position
answers `-NOMASTERLINK`: not an error (`repl_errors` stays), the follower
retries after its backoff.

Resume: with `--appendonly yes` a replica journals what it applies, framed
as it arrived, with two markers around a snapshot: `REPLSYNC <replid>
<offset>` (flush the keyspace, a snapshot as of offset follows) and
`REPLSYNCED` (the snapshot is complete). Recovery (`replay`) rebuilds the
keyspace and the position: offset = the marker's offset + the frames after
`REPLSYNCED`. So a restarted replica asks `REPLICATE FROM <offset> ID
<replid>` and gets a partial sync when the primary's backlog still holds
it. A journal that ends inside a snapshot, or no journal at all, means no
known position: the replica asks from `0 ?` and gets a full sync (which
flushes its keyspace first). A torn tail only makes the offset smaller:
the primary sends those frames again. A full sync starts the journal over (the
server's `restart_journal`: commit, truncate, reopen) before writing the
snapshot, so the journal holds one snapshot and the frames after it; a kill
in between leaves an empty journal or one ending inside the snapshot: no
position, a full sync at the next start.

Bounds: the handshake line is at most 512 bytes; a frame at most
`max_frame` bytes (the server's max_request) and must hold exactly one
command of a known write with a valid arity; anything else (a CRC mismatch
included) is a `ReplError`: the link is dropped, counted in `repl_errors`,
logged, and the follower reconnects after its backoff (50 ms doubling to
2 s, back to 50 ms after a handshake succeeds). The replica never serves a
client write (the shard is read-only) and never crashes on what its
primary sends.

Lifecycle: built by the server before the worker accepts (recovery calls
`replay`), `run()` is a task from the worker's start until it stops.

Invariants: a frame is applied, journalled and relayed exactly once per
link, in order; `offset` counts live frames applied since the snapshot of `replid`;
an ACK never names an offset not applied.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional

from .._conn import api
from .._conn.timers import sleep
from ..redis._resp import encode_command
from .backlog import FrameError, FrameReader
from .datatypes import parse_int
from .resp import Limits
from ._fastresp import Scanner

__all__ = ["Follower", "ReplError"]

log = logging.getLogger("ringline.kv.repl")

_LINE_MAX = 512
_HANDSHAKE, _SNAPSHOT, _STREAM = 0, 1, 2


class ReplError(Exception):
    """The primary sent something a replica cannot apply."""


class NotReady(Exception):
    """The primary is itself a replica without a position yet (-NOMASTERLINK):
    not an error, the follower retries after its backoff."""


class Follower:
    """One shard's replication client (see the module doc)."""

    def __init__(self, shard: Any, writelog: Any, host: str, port: int, *,
                 max_frame: int, worker: Any = None) -> None:
        self.shard = shard
        self.writelog = writelog
        self.host = host
        self.port = port
        self.worker = worker
        self.reader = FrameReader(max_frame)
        self.parser = Scanner(Limits(max_bulk=max_frame, max_args=max_frame,
                                     max_inline=_LINE_MAX, max_request=max_frame + 1))
        self.replid: Optional[bytes] = None
        self.offset = 0
        self.acked = 0
        self.phase = _HANDSHAKE
        self.conn: Any = None
        self.up = False
        self._snap_left = 0
        self._snap: Optional[tuple] = None      # (replid, offset) of the snapshot in progress
        self.restart_journal: Optional[Callable[[], None]] = None    # the server's, with a journal
        self.relay: Any = None            # the shard's repl.Primary serving sub-replicas
        self.full_syncs = self.partial_syncs = self.errors = self.connects = 0
        self.last_error = ""

    # -- recovery (the replica's own journal) ------------------------------

    def replay(self, args: List[bytes]) -> None:
        name = args[0].upper()
        if name == b"REPLSYNC" and len(args) == 3:
            self.shard.ks.flush()
            self._snap = (args[1], int(args[2]))
            self.replid = None
        elif name == b"REPLSYNCED":
            if self._snap is not None:
                self.replid, self.offset = self._snap
                self._snap = None
        else:
            self.shard.replay(args)
            if self.replid is not None:
                self.offset += 1

    def recovered(self) -> None:
        if self._snap is not None:        # the journal ends inside a snapshot
            self._snap = None
            self.replid = None
            self.offset = 0

    # -- the link ------------------------------------------------------------

    async def run(self) -> None:
        delay = 0.05
        while self.worker is None or not self.worker.stopping:
            try:
                conn = await api.connect((self.host, self.port), timeout=2.0)
            except (OSError, TimeoutError) as exc:
                self.last_error = str(exc)
                await sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.conn = conn
            self.connects += 1
            self.phase = _HANDSHAKE
            try:
                conn.send_nowait(encode_command(
                    [b"REPLICATE", b"FROM", b"%d" % (self.offset if self.replid else 0),
                     b"ID", self.replid or b"?"]))
                await conn.on_data(self._on_data)
                self.last_error = "primary closed the connection"
            except NotReady as exc:
                self.last_error = str(exc)
            except (ReplError, FrameError) as exc:
                self.errors += 1
                self.last_error = str(exc)
                log.error("kv replica: link to %s:%d dropped: %s", self.host, self.port, exc)
            except ConnectionError as exc:
                self.last_error = str(exc)
            finally:
                self.up = False
                self.conn = None
                conn.abort()
            if self.phase != _HANDSHAKE:
                delay = 0.05
            await sleep(delay)
            delay = min(delay * 2, 2.0)

    def _on_data(self, view: Any) -> Any:
        pos = 0
        if self.phase == _HANDSHAKE:
            head = bytes(view[:_LINE_MAX + 2])
            eol = head.find(b"\r\n")
            if eol < 0:
                if len(head) > _LINE_MAX:
                    raise ReplError("handshake reply line too long")
                return 0
            self._handshake(head[:eol])
            pos = eol + 2
        frames, used, need = self.reader.read(view[pos:])
        for f in frames:
            self._apply(f)
        pos += used
        if self.phase == _STREAM and self.offset != self.acked:
            self.acked = self.offset
            self.conn.send_nowait(encode_command([b"REPLCONF", b"ACK", b"%d" % self.offset]))
        if pos == 0 and need:
            return api.need_at_least(need)
        return pos

    def _handshake(self, line: bytes) -> None:
        if line.startswith(b"-NOMASTERLINK "):
            raise NotReady(line[1:100].decode("ascii", "replace"))
        parts = line.split()
        if len(parts) not in (3, 5) or parts[0] != b"+ACK" \
                or (len(parts) == 5 and parts[3] != b"FULL"):
            raise ReplError(f"primary answered {line[:100]!r}")
        offset = parse_int(parts[1])
        replid = parts[2]
        if offset is None or offset < 0 or not 1 <= len(replid) <= 64:
            raise ReplError(f"primary answered {line[:100]!r}")
        if len(parts) == 3:
            if replid != self.replid or offset != self.offset:
                raise ReplError("primary offered a partial sync of another position")
            self.partial_syncs += 1
            self.phase = _STREAM
        else:
            count = parse_int(parts[4])
            if count is None or count < 0:
                raise ReplError(f"primary answered {line[:100]!r}")
            self.full_syncs += 1
            if self.restart_journal is not None:
                self.restart_journal()
            self.shard.ks.flush()
            self.replid = None            # the relay refuses sub-replicas until the snapshot is in
            if self.relay is not None:
                self.relay.reset()        # their streams of the old keyspace end here
            self._snap = (replid, offset)
            self.writelog.append(encode_command([b"REPLSYNC", replid, b"%d" % offset]))
            self._snap_left = count
            self.phase = _SNAPSHOT
            if not count:
                self._snapshot_done()
        self.up = True
        self.acked = -1               # acknowledge the position at once

    def _snapshot_done(self) -> None:
        self.writelog.append(encode_command([b"REPLSYNCED"]))
        self.replid, self.offset = self._snap       # type: ignore[misc]
        self._snap = None
        self.phase = _STREAM
        if self.relay is not None:
            self.relay.reset()            # its backlog starts at the new offset

    def _apply(self, f: memoryview) -> None:
        payload = bytes(f[8:])
        cmds, used = self.parser.feed(payload)
        if self.parser.error is not None or len(cmds) != 1 or used != len(payload):
            raise ReplError("primary sent a frame that is not one command")
        args = cmds[0]
        shard = self.shard
        spec = shard.table.get(args[0].lower())
        n = len(args)
        if spec is None or not spec[2] or (spec[1] > 0 and n != spec[1]) \
                or (spec[1] < 0 and n < -spec[1]):
            raise ReplError(f"primary sent a frame that is not a write: {args[0][:40]!r}")
        try:
            shard.replay(args)
        except Exception as exc:
            raise ReplError(f"applying {args[0][:40]!r} failed: {exc!r}") from exc
        data = bytes(f)
        self.writelog.append_framed(data, 1)
        if self.phase == _SNAPSHOT:
            self._snap_left -= 1
            if not self._snap_left:
                self._snapshot_done()
        else:
            self.offset += 1
            if self.relay is not None:
                self.relay.feed(data, 1)  # the same frame at the same offset downstream

    # -- INFO ----------------------------------------------------------------

    def info(self) -> List[Any]:
        return [("role", "slave"), ("master_host", self.host), ("master_port", self.port),
                ("master_link_status", "up" if self.up else "down"),
                ("master_sync_in_progress", 1 if self.phase == _SNAPSHOT else 0),
                ("slave_repl_offset", self.offset), ("master_repl_offset", self.offset),
                ("master_replid", (self.replid or b"?").decode()),
                ("slave_read_only", 1),
                ("full_syncs", self.full_syncs), ("partial_syncs", self.partial_syncs),
                ("repl_errors", self.errors), ("repl_connects", self.connects),
                ("repl_last_error", self.last_error.replace("\r", " ").replace("\n", " "))]
