"""Command dispatch of ringline.kv, and the server and connection commands.

Owns: `Shard` (one worker's keyspace, counters and journal hook), `Session`
(one connection's protocol version, name and id), `Shard.execute`, the one
place a command is looked up, its arity checked, its keys routed (MOVED when
another shard owns them), run, and journalled; and the commands that are
about the server or the connection rather than the data: PING ECHO HELLO
AUTH SELECT CLIENT COMMAND CONFIG INFO DBSIZE FLUSHALL FLUSHDB QUIT (CLUSTER is
ringline.kv.cluster's).

Lifecycle: one Shard per worker process (ringline.kv.server builds it); a
Session per connection; `execute(session, args)` per command, in order.

Invariants:
  - a command is journalled (`Shard.on_write(record)`) exactly when it is a
    write command and it changed the keyspace (`Keyspace.dirty` moved), and
    before its reply is produced, so the reply's sequence number (the
    journal's record count) covers it;
  - an error reply never changes the keyspace;
  - a key that this shard does not own gets a MOVED reply and nothing else
    (see docs/kv.md, "Sharding").

The one exception to "execute is the one dispatch path": GET key and SET key
value (no options) on a single shard are run by the native request path
(kv/_fastresp.pyx) straight against `Keyspace.data` when execute would do
exactly the same (no deadline on the key, a string value); it keeps these
invariants and counts `commands_processed`; a new hook on writes belongs in
`on_write`, which it calls (or whose journal records it frames itself).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .cluster import cmd_cluster, cmd_ok
from .datatypes import COMMANDS as DATA_COMMANDS, NOT_INT, REWRITE, SYNTAX, parse_int
from .resp import OK, PONG, Error, Map, Simple
from .slots import key_slot
from .store import Keyspace

__all__ = ["Shard", "Session", "VERSION"]

VERSION = b"7.0.0"      # the Redis version ringline.kv reports (its command set's)


class Session:
    """One client connection's state."""

    __slots__ = ("id", "proto", "name", "closing", "takeover", "woff")

    def __init__(self, cid: int) -> None:
        self.id = cid
        self.proto = 2
        self.name: Optional[bytes] = None
        self.closing = False       # QUIT: close after this reply
        self.takeover: Any = None  # REPLICATE: the replication link taking the connection over
        self.woff = 0              # the write log's offset after this client's last write


class Shard:
    """One worker's keyspace and command executor.

    `slots` is None for a single shard (every key is local); else a
    (first, last) range of the 16384 hash slots this shard owns, and
    `slot_owner(slot) -> b"host:port"` names the owner of another slot.
    """

    def __init__(self, *, shard_id: int = 0, slots: Optional[Tuple[int, int]] = None,
                 slot_owner: Optional[Callable[[int], bytes]] = None,
                 port: int = 0, layout: Sequence[Tuple[int, int, bytes]] = ()) -> None:
        self.ks = Keyspace()
        self.shard_id = shard_id
        self.slots = slots
        self.slot_owner = slot_owner
        self.layout = list(layout)           # (first, last, b"host:port") per shard
        self.port = port
        self.on_write: Optional[Callable[[List[bytes]], None]] = None
        self.appendonly = False
        self.readonly = False                # a replica: client writes get READONLY
        self.replication: Any = None         # ringline.kv.repl.Primary (a relay on a replica)
        self.repl_info: Callable[[], List[Tuple[str, Any]]] = \
            lambda: [("role", "master"), ("connected_slaves", 0)]
        self.info_extra: Callable[[], List[Tuple[str, Any]]] = lambda: []
        self.started = time.time()
        self.commands_processed = 0
        self.connections = 0
        self.next_client_id = 1
        self.table = dict(DATA_COMMANDS)
        for name, spec in _SERVER_COMMANDS.items():
            self.table[name] = spec

    def new_session(self) -> Session:
        s = Session(self.next_client_id)
        self.next_client_id += 1
        return s

    # -- the one dispatch path ------------------------------------------------

    def execute(self, session: Session, args: List[bytes]) -> Any:
        """Run one command; returns its reply value."""
        self.commands_processed += 1
        name = args[0].lower()
        spec = self.table.get(name)
        if spec is None:
            return _unknown(args)
        fn, arity, write, first, last, step = spec
        n = len(args)
        if (arity > 0 and n != arity) or (arity < 0 and n < -arity):
            return Error(b"ERR wrong number of arguments for '%s' command" % name)
        if self.slots is not None and first and n > first:
            moved = self._route(args, first, last, step)
            if moved is not None:
                return moved
        if write and self.readonly:
            return READONLY
        if fn in _SERVER_FNS:
            return fn(self, session, args)
        if not write:
            return fn(self.ks, args)
        ks = self.ks
        before = ks.dirty
        REWRITE[0] = None
        reply = fn(ks, args)
        if ks.dirty != before and self.on_write is not None:
            rw = REWRITE[0]
            if rw is None:
                self.on_write(args)
            else:
                for rec in rw:
                    self.on_write(rec)
        return reply

    def _route(self, args: List[bytes], first: int, last: int, step: int) -> Any:
        end = len(args) - 1 if last < 0 else min(last, len(args) - 1)
        slot = key_slot(args[first])
        for i in range(first + step, end + 1, step):
            if key_slot(args[i]) != slot:
                return Error(b"CROSSSLOT Keys in request don't hash to the same slot")
        lo, hi = self.slots  # type: ignore[misc]
        if lo <= slot <= hi:
            return None
        owner = self.slot_owner(slot) if self.slot_owner else b"?"
        return Error(b"MOVED %d %s" % (slot, owner))

    def replay(self, args: List[bytes]) -> None:
        """Apply one journal record (recovery): no reply, no journalling."""
        spec = self.table.get(args[0].lower())
        if spec is None or not spec[2]:
            return
        fn = spec[0]
        if fn in _SERVER_FNS:
            fn(self, Session(0), args)
        else:
            fn(self.ks, args)


def _unknown(args: List[bytes]) -> Error:
    text = b""
    for a in args[1:]:
        if len(text) >= 128:
            break
        text += b"'" + a[:128 - len(text)] + b"' "
    msg = b"ERR unknown command '%s', with args beginning with: %s" % (args[0][:128], text)
    return Error(msg.replace(b"\r", b" ").replace(b"\n", b" "))


# -- connection commands -----------------------------------------------------------

def cmd_ping(sh: Shard, se: Session, a: List[bytes]) -> Any:
    if len(a) > 2:
        return Error(b"ERR wrong number of arguments for 'ping' command")
    return PONG if len(a) == 1 else a[1]


def cmd_echo(sh: Shard, se: Session, a: List[bytes]) -> Any:
    return a[1]


def cmd_quit(sh: Shard, se: Session, a: List[bytes]) -> Any:
    se.closing = True
    return OK


READONLY = Error(b"READONLY You can't write against a read only replica.")
NO_REPLICATION = Error(b"ERR replication is not enabled on this shard")


def cmd_replicate(sh: Shard, se: Session, a: List[bytes]) -> Any:
    """REPLICATE FROM <offset> ID <replid>: this connection becomes a
    replication stream (ringline.kv.repl)."""
    if sh.replication is None:
        return NO_REPLICATION
    return sh.replication.replicate(se, a)


def cmd_wait(sh: Shard, se: Session, a: List[bytes]) -> Any:
    if sh.replication is None or sh.readonly:      # a replica's sub-replicas: no WAIT
        return Error(b"ERR WAIT cannot be used with replica instances.")
    return sh.replication.wait(se, a)


def cmd_replconf(sh: Shard, se: Session, a: List[bytes]) -> Any:
    """REPLCONF from an ordinary client (a replica's ACKs arrive on its
    replication stream instead): accepted and ignored, as redis-cli needs."""
    return OK


WRONGPASS = Error(b"WRONGPASS invalid username-password pair or user is disabled.")


def cmd_auth(sh: Shard, se: Session, a: List[bytes]) -> Any:
    """Only Redis' default user exists, without a password (nopass)."""
    if len(a) == 2:
        return Error(b"ERR AUTH <password> called without any password configured for the "
                     b"default user. Are you sure your configuration is correct?")
    if len(a) != 3:
        return SYNTAX
    return OK if a[1] == b"default" else WRONGPASS


def cmd_select(sh: Shard, se: Session, a: List[bytes]) -> Any:
    db = parse_int(a[1])
    if db is None:
        return NOT_INT
    if db != 0:
        return Error(b"ERR DB index is out of range")
    return OK


def _hello_map(sh: Shard, se: Session) -> Map:
    return Map([b"server", b"redis", b"version", VERSION, b"proto", se.proto,
                b"id", se.id, b"mode", b"standalone" if sh.slots is None else b"cluster",
                b"role", b"master", b"modules", []])


def cmd_hello(sh: Shard, se: Session, a: List[bytes]) -> Any:
    proto = se.proto
    i = 1
    if len(a) > 1:
        v = parse_int(a[1])
        if v is None:
            return Error(b"ERR Protocol version is not an integer or out of range")
        if v not in (2, 3):
            return Error(b"NOPROTO unsupported protocol version")
        proto = v
        i = 2
    name = None
    while i < len(a):
        opt = a[i].upper()
        if opt == b"AUTH" and i + 2 < len(a):
            if a[i + 1] != b"default":
                return WRONGPASS
            i += 3                  # the default user, without a password
        elif opt == b"SETNAME" and i + 1 < len(a):
            name = a[i + 1]
            if b" " in name or b"\n" in name:
                return Error(b"ERR Client names cannot contain spaces, newlines or special "
                             b"characters.")
            i += 2
        else:
            return Error(b"ERR Syntax error in HELLO option '%s'" % a[i])
    se.proto = proto
    if name is not None:
        se.name = name or None
    return _hello_map(sh, se)


def cmd_client(sh: Shard, se: Session, a: List[bytes]) -> Any:
    sub = a[1].lower()
    if sub == b"setname" and len(a) == 3:
        name = a[2]
        if any(c <= 32 or c > 126 for c in name):
            return Error(b"ERR Client names cannot contain spaces, newlines or special "
                         b"characters.")
        se.name = name or None
        return OK
    if sub == b"getname" and len(a) == 2:
        return se.name
    if sub == b"id" and len(a) == 2:
        return se.id
    if sub == b"setinfo" and len(a) == 4:
        return OK
    if sub in (b"setname", b"getname", b"id", b"setinfo"):
        return Error(b"ERR wrong number of arguments for 'client|%s' command" % sub)
    return Error(b"ERR unknown subcommand '%s'. Try CLIENT HELP." % a[1][:128])


def _command_info(name: bytes, spec: Any) -> list:
    fn, arity, write, first, last, step = spec
    flags = [Simple(b"write")] if write else [Simple(b"readonly")]
    return [name, arity, flags, first, last, step]


def cmd_command(sh: Shard, se: Session, a: List[bytes]) -> Any:
    if len(a) == 1:
        return [_command_info(n, s) for n, s in sorted(sh.table.items())]
    sub = a[1].lower()
    if sub == b"count":
        return len(sh.table)
    if sub == b"info":
        return [(_command_info(n.lower(), sh.table[n.lower()])
                 if n.lower() in sh.table else None) for n in a[2:]]
    if sub == b"docs":
        return Map()
    if sub == b"list":
        return sorted(sh.table)
    return Error(b"ERR unknown subcommand '%s'. Try COMMAND HELP." % a[1][:128])


def cmd_config(sh: Shard, se: Session, a: List[bytes]) -> Any:
    sub = a[1].lower()
    if sub == b"get":
        if len(a) < 3:
            return Error(b"ERR wrong number of arguments for 'config|get' command")
        known = {b"save": b"", b"appendonly": b"yes" if sh.appendonly else b"no",
                 b"databases": b"1"}
        out = Map()
        for pat in a[2:]:
            p = pat.lower()
            if p in known:
                out += [p, known[p]]
        return out
    if sub in (b"set", b"resetstat", b"rewrite"):
        return OK
    return Error(b"ERR unknown subcommand '%s'. Try CONFIG HELP." % a[1][:128])


def cmd_dbsize(sh: Shard, se: Session, a: List[bytes]) -> Any:
    return len(sh.ks)


def cmd_flushall(sh: Shard, se: Session, a: List[bytes]) -> Any:
    if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"SYNC", b"ASYNC")):
        return SYNTAX
    ks = sh.ks
    ks.flush()
    if sh.on_write is not None:
        sh.on_write([b"FLUSHALL"])
    return OK


def cmd_info(sh: Shard, se: Session, a: List[bytes]) -> Any:
    ks = sh.ks
    sections: List[Tuple[str, List[Tuple[str, Any]]]] = [
        ("Server", [("redis_version", VERSION.decode()), ("ringline_kv", 1),
                    ("redis_mode", "standalone" if sh.slots is None else "cluster"),
                    ("os", os.uname().sysname), ("process_id", os.getpid()),
                    ("tcp_port", sh.port), ("shard_id", sh.shard_id),
                    ("uptime_in_seconds", int(time.time() - sh.started)),
                    ("python_version", sys.version.split()[0])]),
        ("Clients", [("connected_clients", sh.connections)]),
        ("Persistence", [("aof_enabled", 1 if sh.appendonly else 0)] + sh.info_extra()),
        ("Stats", [("total_commands_processed", sh.commands_processed),
                   ("expired_keys", ks.expired_keys)]),
        ("Replication", sh.repl_info()),
        ("Keyspace", [("db0", f"keys={len(ks)},expires={len(ks.expires)},avg_ttl=0")]
         if len(ks) else []),
    ]
    want = {x.lower() for x in a[1:]}
    lines = []
    for title, fields in sections:
        if want and not want & {b"all", b"everything", b"default", title.lower().encode()}:
            continue
        lines.append(f"# {title}")
        lines += [f"{k}:{v}" for k, v in fields]
        lines.append("")
    return ("\r\n".join(lines)).encode()


_SERVER_COMMANDS = {
    b"ping": (cmd_ping, -1, False, 0, 0, 0),
    b"echo": (cmd_echo, 2, False, 0, 0, 0),
    b"quit": (cmd_quit, -1, False, 0, 0, 0),
    b"select": (cmd_select, 2, False, 0, 0, 0),
    b"auth": (cmd_auth, -2, False, 0, 0, 0),
    b"hello": (cmd_hello, -1, False, 0, 0, 0),
    b"client": (cmd_client, -2, False, 0, 0, 0),
    b"command": (cmd_command, -1, False, 0, 0, 0),
    b"config": (cmd_config, -2, False, 0, 0, 0),
    b"dbsize": (cmd_dbsize, 1, False, 0, 0, 0),
    b"flushall": (cmd_flushall, -1, True, 0, 0, 0),
    b"flushdb": (cmd_flushall, -1, True, 0, 0, 0),
    b"info": (cmd_info, -1, False, 0, 0, 0),
    b"cluster": (cmd_cluster, -2, False, 0, 0, 0),
    b"readonly": (cmd_ok, 1, False, 0, 0, 0),
    b"readwrite": (cmd_ok, 1, False, 0, 0, 0),
    b"asking": (cmd_ok, 1, False, 0, 0, 0),
    b"replicate": (cmd_replicate, -1, False, 0, 0, 0),
    b"wait": (cmd_wait, 3, False, 0, 0, 0),
    b"replconf": (cmd_replconf, -1, False, 0, 0, 0),
}
_SERVER_FNS = {spec[0] for spec in _SERVER_COMMANDS.values()}
