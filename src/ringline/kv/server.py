"""The ringline.kv server: `KvOptions` and `KvServer`, the ringline Handler
that serves RESP on every worker.

Owns: per worker, the Shard (keyspace + dispatch), the journal and its
recovery, the write log (repl.WriteLog: journal + replication backlog), the
durability cursor, the replication role (a repl.Primary serving replicas;
with `--replicaof` also a follower.Follower, a read-only shard, and the
Primary relays the followed history to sub-replicas), the active-expiry
task, the worker's own listening socket when there are several shards, and
per connection the request parser, the session and the ReplyGate.

Replication is per shard (docs/kv.md, "Replication"): worker i of a replica
follows worker i of its primary (the primary's port with one worker, its
shard port P+1+i with several), so a replica runs the same --workers.

Sharding (docs/kv.md): one keyspace per worker process. With one worker
(the default) every key is local. With N workers the 16384 hash slots are
split in N contiguous ranges; worker i owns range i and, besides the shared
SO_REUSEPORT port P (any worker may accept there), listens on a port of its
own, P + 1 + i. A command whose keys live in another worker's range gets
`-MOVED <slot> host:P+1+owner`, and CLUSTER SLOTS/SHARDS/NODES describe the
layout, so cluster-aware clients (redis-py's RedisCluster, ringline.redis's
ClusterClient, redis-cli -c) talk to the right worker directly.

Lifecycle: `create_for_worker` runs in the worker before it accepts: it
recovers the worker's journal (so no connection ever sees a keyspace
without its journalled writes) and opens it for appending; with several
shards it also opens the worker's own listener (a port in use fails the
start). `on_start` runs active expiry until the worker stops.
`on_accept(conn)` serves one connection until EOF, QUIT, a protocol error
(the error reply is sent, then the connection closes) or a drop at the
slow-client cap.

Invariants: a reply leaves only through the connection's ReplyGate, tagged
with the write log's count when the policy gates (see gate.py); a
malformed request or a failing command never ends anything but its own
connection (a command that raises gets an `ERR internal error` reply and is
logged).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from typing import Any, List, Optional, Tuple

from .._conn import api
from .._conn.timers import sleep
from .._runtime.handler import Handler
from ..redis._resp import encode_command
from .commands import Session, Shard
from .follower import Follower
from .gate import POLICIES, Deferred, DurabilityCursor, ReplyGate
from .journal import Journal, JournalError
from .repl import Primary, WriteLog
from ._fastresp import FastConn
from .resp import Error, Limits, ProtocolError, RequestParser, encode
from .slots import split

__all__ = ["KvOptions", "KvServer"]

log = logging.getLogger("ringline.kv")

INTERNAL_ERROR = Error(b"ERR internal error (see the server log)")


@dataclasses.dataclass(frozen=True)
class KvOptions:
    """The knobs of a ringline.kv server (see docs/kv.md)."""
    host: str = "127.0.0.1"
    port: int = 6379
    workers: int = 1
    appendonly: bool = False
    dir: str = "."
    appendfsync: bool = True          # fdatasync each group commit
    commit_interval: Optional[float] = None   # seconds; None: once per loop turn
    ack_policy: str = "none"          # none | disk | replica | disk+replica
    ack_replicas: int = 1             # k of the replica policies
    replicaof: Optional[Tuple[str, int]] = None   # (host, port): this server is a replica
    repl_backlog_size: int = 16 << 20  # bytes of recent frames kept per shard (replica too)
    repl_max_pending: int = 64 << 20  # unsent bytes after which a replica is shed
    client_cap: int = 8 << 20         # slow-client cap (bytes held + unsent)
    limits: Limits = Limits()
    expire_period: float = 0.1        # active expiry cadence, seconds
    expire_budget: int = 200          # keys active expiry may delete per run

    def __post_init__(self) -> None:
        if self.ack_policy not in POLICIES:
            raise ValueError(f"ack_policy must be one of {POLICIES}, got {self.ack_policy!r}")
        if "disk" in self.ack_policy and not self.appendonly:
            raise ValueError(f"ack_policy {self.ack_policy!r} needs appendonly")
        if "replica" in self.ack_policy and self.replicaof is not None:
            raise ValueError("ack_policy replica applies only on the top primary "
                             "(a replica's sub-replicas are not waited for): "
                             "a replica's ack_policy is none or disk")
        if self.ack_replicas < 1:
            raise ValueError("ack_replicas must be at least 1")
        if self.repl_backlog_size < 1 or self.repl_max_pending < 1:
            raise ValueError("repl_backlog_size and repl_max_pending must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.limits.max_bulk > self.limits.max_request:
            raise ValueError("max_bulk must not exceed max_request")

    def announce_host(self) -> str:
        """The host MOVED replies and CLUSTER SLOTS name: the bind address,
        or loopback when binding every address."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def journal_path(self, worker_id: int) -> str:
        name = "appendonly.rlj" if self.workers == 1 else f"appendonly-{worker_id}.rlj"
        return os.path.join(self.dir, name)

    def shard_port(self, worker_id: int) -> int:
        return self.port + 1 + worker_id


class KvServer(Handler):
    """ringline.kv's Handler (one instance per worker)."""

    options = KvOptions()     # set by ringline.kv.main before serving

    @classmethod
    def create_for_worker(cls, worker_id: int) -> "KvServer":
        h = cls()
        h._setup(worker_id)
        return h

    def _setup(self, worker_id: int) -> None:
        opts = self.options
        self.loop = asyncio.get_running_loop()
        self.worker_id = worker_id
        if opts.workers > 1:
            ranges = split(opts.workers)
            addr = opts.announce_host().encode()
            layout = [(lo, hi, b"%s:%d" % (addr, opts.shard_port(i)))
                      for i, (lo, hi) in enumerate(ranges)]

            def owner(slot: int) -> bytes:
                return next(a for lo, hi, a in layout if lo <= slot <= hi)
            self.shard = Shard(shard_id=worker_id, slots=ranges[worker_id], slot_owner=owner,
                               port=opts.port, layout=layout)
        else:
            self.shard = Shard(port=opts.port)
        self.cursor = DurabilityCursor(opts.ack_policy, opts.ack_replicas)
        self.journal: Optional[Journal] = None
        self.writelog = wl = WriteLog()
        append = wl.append

        def on_write(args: List[bytes]) -> None:
            append(encode_command(args))
        # on_write while records are kept; FastConn frames them itself then
        self._journal_hook = on_write
        self.listener: Any = None
        self.recovered = (0, 0)
        self.shard.info_extra = self._info_extra
        self.follower: Optional[Follower] = None
        if opts.replicaof is not None:
            host, port = opts.replicaof
            self.shard.readonly = True
            self.follower = Follower(self.shard, wl, host,
                                     port + 1 + worker_id if opts.workers > 1 else port,
                                     max_frame=opts.limits.max_request)

        def enable_writes() -> None:
            self.shard.on_write = on_write
        # a primary's own history, or a replica's relay of its primary's to
        # sub-replicas (chained replication)
        self.primary = Primary(self.loop, self.shard, wl, self.cursor,
                               backlog_size=opts.repl_backlog_size,
                               max_pending=opts.repl_max_pending,
                               enable_writes=enable_writes, follower=self.follower)
        self.shard.replication = self.primary
        if self.follower is not None:
            self.follower.relay = self.primary
            follower_info, relay_info = self.follower.info, self.primary.info
            self.shard.repl_info = lambda: follower_info() + relay_info()
        else:
            self.shard.repl_info = self.primary.info
        if opts.workers > 1:
            self._listen_own_port()      # a port in use fails the worker's start
        if opts.appendonly:
            path = opts.journal_path(worker_id)
            os.makedirs(opts.dir, exist_ok=True)
            self.recovered = Journal.recover(path, self._replay)
            if self.follower is not None:
                self.follower.recovered()
            if self.recovered[1]:
                log.warning("kv worker %d: journal %s: discarded a torn tail of %d bytes",
                            worker_id, path, self.recovered[1])
            self._open_journal(path)
            self.shard.appendonly = True
            if self.follower is None:
                self.shard.on_write = on_write
            else:
                self.follower.restart_journal = self._restart_journal
        if "replica" in opts.ack_policy or self.follower is not None:
            # a replica keeps its backlog from the start (as Redis' replicas
            # do): its sub-replicas resume from it after either side restarts
            self.primary.activate()

    def _open_journal(self, path: str) -> None:
        """Open the journal for appending; its record n is the write log's
        record base + n (base is 0 but after a replica's full sync)."""
        opts = self.options
        base = self.writelog.appended
        advance = self.cursor.advance
        self.journal = self.writelog.journal = Journal.open(
            path, loop=self.loop, fsync=opts.appendfsync, interval=opts.commit_interval,
            on_durable=advance if not base else (lambda n: advance(base + n)),
            on_failure=self._journal_failed)

    def _restart_journal(self) -> None:
        """A replica's full sync: the journal starts over (the snapshot
        that follows replaces everything in it)."""
        old = self.journal
        if old is None or old.failed is not None:
            return
        old.close()                  # commits (and reports) what it buffered
        os.truncate(old.path, 0)
        self._open_journal(old.path)

    def _journal_failed(self, exc: BaseException) -> None:
        log.error("kv worker %d: journal failed, writes now get errors: %s",
                  self.worker_id, exc)
        self.cursor.fail()

    def _info_extra(self) -> List[Any]:
        out: List[Any] = [("ack_policy", self.cursor.policy),
                          ("gate_dropped_clients", self.cursor.dropped),
                          ("gate_released_replies", self.cursor.released),
                          ("gate_held_max_bytes", self.cursor.held_max)]
        if self.journal is not None:
            out += [("aof_" + k, v) for k, v in self.journal.stats().items()]
            out += [("aof_recovered_records", self.recovered[0]),
                    ("aof_discarded_bytes", self.recovered[1])]
        return out

    def _replay(self, payload: bytes) -> None:
        cmds, _ = RequestParser(Limits(max_bulk=len(payload), max_request=len(payload) + 1,
                                       max_args=len(payload))).feed(payload)
        replay = self.shard.replay if self.follower is None else self.follower.replay
        for args in cmds:
            replay(args)

    async def on_start(self) -> None:
        opts = self.options
        ks = self.shard.ks
        worker = getattr(self, "worker", None)
        if self.follower is not None:
            self.follower.worker = worker
            self.loop.create_task(self.follower.run())
        while worker is None or not worker.stopping:
            await sleep(opts.expire_period)
            ks.active_expire(opts.expire_budget)

    def _listen_own_port(self) -> None:
        opts = self.options
        family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((opts.host, opts.shard_port(self.worker_id)))
        sock.listen(1024)
        self._own_sock = sock

        def on_fd(fd: int) -> None:
            try:
                conn = api.adopt_fd(self.loop, fd, family)
            except ConnectionRefusedError:
                return
            self.loop.create_task(self._serve_own(conn))
        self.listener = api.Listener(self.loop, sock, on_fd)

    async def _serve_own(self, conn: Any) -> None:
        try:
            await self.on_accept(conn)
        except ConnectionError:
            pass
        except Exception:
            log.exception("kv worker %d: connection failed", self.worker_id)
        finally:
            if conn.is_alive:
                conn.close()

    async def on_accept(self, conn: Any) -> None:
        shard = self.shard
        shard.connections += 1
        session = shard.new_session()
        gate = ReplyGate(conn, self.cursor, self.options.client_cap)
        fast = FastConn(self.options.limits, shard, session, gate,
                        self.writelog if self.cursor.gated else None,
                        self._run_one, self._failure_reply, api.need_at_least,
                        self.writelog, self._journal_hook)
        try:
            await conn.on_data(fast.on_data)
        except ConnectionError:
            pass
        finally:
            gate.close()
            shard.connections -= 1
            if session.takeover is not None:
                session.takeover.closed()

    # The receive path is native (_fastresp.FastConn: parse what arrived, run
    # the complete commands in order, GET / plain SET straight from the
    # keyspace, push the batch's replies through the gate as one block tagged
    # with the journal's append count); every other command comes back here.

    def _run_one(self, session: Session, args: List[bytes]) -> Any:
        """Run one command through Shard.execute; its encoded reply (a
        Deferred for a WAIT that waits, b"" for REPLICATE)."""
        wl = self.writelog
        before = wl.appended
        try:
            reply = self.shard.execute(session, args)
        except Exception as exc:
            return self._failure_reply(session, args, exc)
        if wl.appended != before:
            session.woff = wl.appended
        if type(reply) is Deferred:
            return reply
        if session.takeover is not None:
            return b""
        return encode(reply, session.proto)     # HELLO's own reply too

    def _failure_reply(self, session: Session, args: Optional[List[bytes]],
                       exc: BaseException) -> bytes:
        """The reply to a command that failed (a journal failure, a bug), or
        to a protocol error (args None)."""
        if isinstance(exc, ProtocolError):
            reply = Error(str(exc).encode())
        elif isinstance(exc, JournalError):
            log.error("kv worker %d: %s", self.worker_id, exc)
            reply = Error(b"ERR journal failed: writes are not persisted")
        else:
            log.error("kv worker %d: command %r failed", self.worker_id,
                      (args or [b"?"])[:1], exc_info=exc)
            reply = INTERNAL_ERROR
        return encode(reply, session.proto)
