"""ringline.kv chained replication (docs/kv.md, "Replication", "Chained
replication"): a replica serves REPLICATE to sub-replicas with its
primary's history (same replid, same offsets), so primary -> replica ->
sub-replica converges; a killed sub-replica resumes partially from the
replica; the middle replica restarts (with its journal: the sub-replica
resumes partially; without: both take full syncs) and the chain ends
consistent; a middle replica's full sync from a restarted primary drops its
sub-replicas' links and they follow with a full sync of the new history; a
sub-replica re-pointed between the replica and the top primary resumes
partially both ways; a hostile sub-replica (never reads, acks the future)
is dropped without touching the replica's own link; a replica without a
position refuses with -NOMASTERLINK; with several shards the chain is per
shard; WAIT stays an error on a replica and
`--ack-policy replica` is refused there. Servers are subprocesses on
127.0.0.1 free ports, run on both backends; every wait is a bounded poll,
nothing asserts a duration. The last two tests drive a relay and its
Follower without I/O: a full sync drops the sub-replica links at its
handshake, no old-history frame is sent after it, and the backlog restarts
at the snapshot's offset."""
from __future__ import annotations

import socket

import pytest

from ringline.kv.__main__ import parse_args
from ringline.kv.backlog import frame
from ringline.kv.commands import Session, Shard
from ringline.kv.gate import DurabilityCursor
from ringline.kv.repl import Link, Primary, WriteLog
from ringline.redis._resp import encode_command

from support import BACKENDS
from support.kv_repl import FakePrimary, dump, info, load, replica_of, synced, until
from support.kv_server import KvServer, RespConn


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request, monkeypatch):
    monkeypatch.setenv("RINGLINE_BACKEND", request.param)   # the servers inherit it
    return request.param


def _chain_synced(p, r, s):
    return synced(p, r) and synced(r, s)


def _same(keys, *servers):
    want = dump(servers[0].port, keys)
    for srv in servers[1:]:
        assert dump(srv.port, keys) == want, srv.port
    return want


def _counts(port):
    i = info(port)
    return int(i["full_syncs"]), int(i["partial_syncs"])


def test_chain_converges_after_a_write_load():
    with KvServer() as p, replica_of(p) as r:
        with p.conn() as c:
            keys = load(c, "a")
            until(lambda: synced(p, r), what="replica synced")
            with replica_of(r) as s:           # joins late: a snapshot of the replica
                keys += load(c, "b")
                c.call("FLUSHALL")
                keys = load(c, "c") + keys
                until(lambda: _chain_synced(p, r, s), what="chain synced")
                want = _same(keys, p, r, s)
                assert want["dbsize"] > 300
                pi, ri, si = info(p.port), info(r.port), info(s.port)
                assert si["master_replid"] == ri["master_replid"] == pi["master_replid"]
                assert si["slave_repl_offset"] == pi["master_repl_offset"]
                assert pi["connected_slaves"] == "1"              # the sub-replica is not P's
                assert ri["role"] == "slave" and ri["connected_slaves"] == "1"
                assert f"offset={pi['master_repl_offset']}," in ri["slave0"]
                assert ri["repl_served_full_syncs"] == "1" and ri["repl_backlog_active"] == "1"
                assert _counts(s.port) == (1, 0)
                with r.conn() as rc:
                    assert str(rc.call("WAIT", "0", "0")).startswith("ERR WAIT cannot be used")
                    assert str(rc.call("SET", "x", "y")).startswith("READONLY")


def test_killed_sub_replica_resumes_partially_from_the_replica():
    with KvServer() as p, replica_of(p) as r, replica_of(r, "--appendonly", "yes") as s:
        with p.conn() as c:
            keys = load(c, "a", 50)
            until(lambda: _chain_synced(p, r, s), what="chain synced")
            s.kill()
            keys += load(c, "b", 20)
            s.start()
            until(lambda: _chain_synced(p, r, s), what="sub-replica resynced")
            assert _counts(s.port) == (0, 1)                  # from its journal: partial
            ri = info(r.port)
            assert (ri["repl_served_full_syncs"], ri["repl_served_partial_syncs"]) == ("1", "1")
            assert _counts(p.port) == (1, 0)                  # P saw none of it
            _same(keys, p, r, s)


@pytest.mark.parametrize("journal", ["yes", "no"])
def test_middle_replica_restarts_and_the_sub_replica_ends_consistent(journal):
    with KvServer() as p, replica_of(p, "--appendonly", journal) as r, replica_of(r) as s:
        with p.conn() as c:
            keys = load(c, "a", 50)
            until(lambda: _chain_synced(p, r, s), what="chain synced")
            r.kill()
            until(lambda: info(s.port)["master_link_status"] == "down", what="link down")
            keys += load(c, "b", 20)              # while the middle is down
            r.start()
            keys += load(c, "c", 20)
            until(lambda: _chain_synced(p, r, s), what="chain resynced")
            _same(keys, p, r, s)
            if journal == "yes":
                # the replica resumed from its journal, its backlog from there:
                # both resumes are partial
                assert _counts(r.port) == (0, 1) and _counts(s.port) == (1, 1)
            else:
                # no position after the restart (NOMASTERLINK meanwhile), then a
                # snapshot past the sub-replica's offset: full syncs down the chain
                assert _counts(r.port) == (1, 0) and _counts(s.port) == (2, 0)
                assert info(s.port)["repl_errors"] == "0"


def test_full_sync_of_the_middle_replica_is_followed_by_the_sub_replica():
    with KvServer() as p, replica_of(p) as r, replica_of(r) as s:
        with p.conn() as c:
            keys = load(c, "a", 50)
        until(lambda: _chain_synced(p, r, s), what="chain synced")
        old = info(p.port)["master_replid"]
        p.stop()
        until(lambda: info(r.port)["master_link_status"] == "down", what="link down")
        p.start()                       # no journal: empty, a new history
        with p.conn() as c:
            keys += load(c, "b", 50)
        until(lambda: _chain_synced(p, r, s), what="chain resynced")
        ri, si = info(r.port), info(s.port)
        assert si["master_replid"] == ri["master_replid"] == info(p.port)["master_replid"] != old
        assert ri["repl_relay_resets"] == "1"          # the sub-replica's link was dropped
        assert _counts(r.port) == (2, 0) and _counts(s.port) == (2, 0)
        want = _same(keys, p, r, s)
        assert want["a:s1"][0] == b"none"              # the old keyspace is gone everywhere


def test_sub_replica_repointed_between_replica_and_primary_resumes_partially():
    with KvServer() as p, replica_of(p) as r, replica_of(r, "--appendonly", "yes") as s:
        with p.conn() as c:
            keys = load(c, "a", 50)
            until(lambda: _chain_synced(p, r, s), what="chain synced")
            s.kill()
            s.args[2] = str(p.port)                     # --replicaof 127.0.0.1 <P>
            keys += load(c, "b", 20)
            s.start()
            until(lambda: synced(p, s), what="synced with the top primary")
            assert _counts(s.port) == (0, 1) and _counts(p.port) == (1, 1)
            _same(keys, p, s)
            s.kill()
            s.args[2] = str(r.port)                     # and back under the replica
            keys += load(c, "c", 20)
            s.start()
            until(lambda: _chain_synced(p, r, s), what="synced under the replica again")
            assert _counts(s.port) == (0, 1)
            assert info(r.port)["repl_served_partial_syncs"] == "1"
            _same(keys, p, r, s)


def test_chain_with_several_shards_is_per_shard():
    from ringline.kv.slots import key_slot, split
    ranges = split(2)

    def shard_of(key):
        slot = key_slot(key.encode())
        return next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)
    with KvServer(workers=2) as p, replica_of(p) as r, replica_of(r) as s:
        keys = [f"key{i}" for i in range(200)]
        for shard in (0, 1):
            with RespConn(p.port + 1 + shard) as c:
                mine = [k for k in keys if shard_of(k) == shard]
                assert c.pipeline([("SET", k, k + "!") for k in mine]) == [b"OK"] * len(mine)

        def shards_synced():
            return all(info(p.port + 1 + i)["master_repl_offset"]
                       == info(r.port + 1 + i).get("slave_repl_offset")
                       == info(s.port + 1 + i).get("slave_repl_offset") for i in (0, 1))
        until(shards_synced, what="both shards synced down the chain")
        for shard in (0, 1):
            with RespConn(s.port + 1 + shard) as c:
                mine = [k for k in keys if shard_of(k) == shard]
                assert [c.call("GET", k) for k in mine] == [(k + "!").encode() for k in mine]
            assert info(r.port + 1 + shard)["connected_slaves"] == "1"


def test_hostile_sub_replicas_do_not_touch_the_replica_link():
    with KvServer() as p, replica_of(p, "--repl-max-pending", "65536") as r, \
            replica_of(r) as good:
        until(lambda: _chain_synced(p, r, good), what="chain synced")
        # one that acks the future is dropped
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as bad:
            bad.sendall(encode_command(("REPLICATE", "FROM", "0", "ID", "?")))
            bad.settimeout(10)
            assert bad.recv(64).startswith(b"+ACK ")
            bad.sendall(encode_command(("REPLCONF", "ACK", "999999")))
            until(lambda: info(r.port)["repl_bad_acks"] == "1", what="bad ack counted")
        # one that never reads is shed at --repl-max-pending
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", r.port))
        try:
            s.sendall(encode_command(("REPLICATE", "FROM", "0", "ID", "?")))
            until(lambda: info(r.port)["connected_slaves"] == "2", what="two sub-replicas")
            value = "x" * 32768
            with p.conn() as c:
                for i in range(30):
                    c.pipeline([("SET", f"k{i}:{j}", value) for j in range(10)])
                    if info(r.port)["repl_shed_replicas"] != "0":
                        break
            until(lambda: _chain_synced(p, r, good), what="chain synced after the load")
            ri = info(r.port)
            assert ri["repl_shed_replicas"] == "1" and ri["connected_slaves"] == "1"
            assert (ri["repl_connects"], ri["repl_errors"]) == ("1", "0")   # its own link held
            assert info(p.port)["repl_bad_acks"] == "0"
            with good.conn() as gc, p.conn() as c:
                assert gc.call("DBSIZE") == c.call("DBSIZE") > 0
        finally:
            s.close()


def test_a_replica_without_a_position_refuses_sub_replicas():
    with FakePrimary(b"") as fake:                  # answers nothing: no position ever
        with KvServer("--replicaof", "127.0.0.1", str(fake.port)) as r, replica_of(r) as s:
            with r.conn() as c:
                assert str(c.call("REPLICATE", "FROM", "0", "ID", "?")).startswith("NOMASTERLINK")
                assert c.call("PING") == b"PONG"    # still an ordinary client
            until(lambda: "NOMASTERLINK" in info(s.port)["repl_last_error"], what="refused")
            si = info(s.port)
            assert si["repl_errors"] == "0" and si["master_link_status"] == "down"
            assert info(r.port)["connected_slaves"] == "0"


def test_ack_policy_replica_is_refused_on_a_replica(capsys):
    for policy in ("replica", "disk+replica"):
        with pytest.raises(SystemExit):
            parse_args(["--replicaof", "127.0.0.1", "6379", "--ack-policy", policy,
                        "--appendonly", "yes"])
        assert "applies only on the top primary" in capsys.readouterr().err
    assert parse_args(["--replicaof", "127.0.0.1", "6379", "--ack-policy", "disk",
                       "--appendonly", "yes"]).ack_policy == "disk"


class _Conn:
    send_queue_bytes = 0
    peer_addr = ("127.0.0.1", 1)

    def __init__(self):
        self.sent = []
        self.aborted = False

    def send_nowait(self, data):
        assert not self.aborted
        self.sent.append(data)

    def abort(self):
        self.aborted = True


class _Loop:
    def __init__(self):
        self.hooks = []

    def _at_flush(self, fn):
        self.hooks.append(fn)

    def turn(self):
        hooks, self.hooks = self.hooks, []
        for fn in hooks:
            fn()


class _Follower:
    replid = b"old"
    offset = 10


def test_relay_reset_sends_no_old_frame_after_a_new_one():
    loop, fol = _Loop(), _Follower()
    relay = Primary(loop, Shard(), WriteLog(), DurabilityCursor("none"),
                    backlog_size=1 << 20, max_pending=1 << 20, follower=fol)
    relay.activate()
    link = Link(relay, 10, b"old")
    link.start(type("G", (), {"close": lambda self: None, "conn": _Conn()})())
    assert link.conn.sent == [b"+ACK 10 old\r\n"] and relay.links == [link]
    fol.offset = 11
    relay.feed(frame(b"old-1"), 1)                  # queued for the end of the turn
    fol.replid = None                               # the follower's full sync starts
    relay.reset()
    assert link.conn.aborted and relay.links == [] and relay.resets == 1
    assert relay.replicate(Session(1), [b"REPLICATE", b"FROM", b"0", b"ID", b"?"]) \
        .startswith(b"NOMASTERLINK")
    loop.turn()                                     # the old frame is not flushed to anyone
    assert link.conn.sent == [b"+ACK 10 old\r\n"]
    fol.replid, fol.offset = b"new", 500            # the snapshot is in
    relay.reset()
    assert (relay.backlog.start, relay.backlog.end) == (500, 500)
    fresh = Link(relay, 500, b"new")                # a sub-replica joins the new history
    fresh.start(type("G", (), {"close": lambda self: None, "conn": _Conn()})())
    relay.feed(frame(b"new-1"), 1)
    loop.turn()
    assert fresh.conn.sent == [b"+ACK 500 new\r\n", frame(b"new-1")]
    assert relay.backlog.since(500) == frame(b"new-1") and relay.backlog.since(10) is None


def test_follower_drives_its_relay():
    """The Follower's side, without I/O: a full sync drops the sub-replica
    links before any frame of the new history and restarts the backlog at
    the snapshot's offset; live frames go downstream at the same offsets."""
    from ringline.kv.follower import Follower
    loop = _Loop()
    fol = Follower(Shard(), WriteLog(), "127.0.0.1", 1, max_frame=1 << 20)
    relay = Primary(loop, fol.shard, fol.writelog, DurabilityCursor("none"),
                    backlog_size=1 << 20, max_pending=1 << 20, follower=fol)
    fol.relay = relay
    relay.activate()
    fol.conn = _Conn()

    def arrive(data):
        assert fol._on_data(memoryview(data)) == len(data)

    def setf(k):
        return frame(encode_command(("SET", k, "v")))
    arrive(b"+ACK 7 hist FULL 1\r\n" + setf("a") + setf("b"))
    assert (fol.replid, fol.offset) == (b"hist", 8)
    assert (relay.backlog.start, relay.backlog.end) == (7, 8)
    sub = Link(relay, 7, b"hist")
    sub.start(type("G", (), {"close": lambda self: None, "conn": _Conn()})())
    assert sub.conn.sent == [b"+ACK 7 hist\r\n" + setf("b")]           # a partial sync
    arrive(setf("c"))
    loop.turn()
    assert sub.conn.sent[-1] == setf("c")
    fol.phase = 0                                  # the link drops; a new one: a full sync
    arrive(b"+ACK 900 hist FULL 2\r\n" + setf("x"))
    assert sub.conn.aborted and relay.links == [] and relay.resets == 1   # at the handshake
    assert relay.replicate(Session(1), [b"REPLICATE", b"FROM", b"8", b"ID", b"hist"]) \
        .startswith(b"NOMASTERLINK")              # mid-snapshot: no position
    arrive(setf("x2") + setf("y"))
    loop.turn()
    assert sub.conn.sent[-1] == setf("c")          # nothing after the new history began
    assert (fol.offset, relay.backlog.start, relay.backlog.end) == (901, 900, 901)
    assert relay.backlog.since(8) is None          # the old offsets mean nothing now
    assert relay.backlog.since(900) == setf("y")
