"""ringline.kv replication, the acceptance points of issue 19 (docs/kv.md,
"Replication"): replicas converge after a write load; a killed replica
resumes from its offset without a snapshot while the backlog holds it and
with one when it does not; under policy `replica` no reply leaves before a
replica acknowledged it, and a stopped replica does not stall k=1 with two
replicas; WAIT. Servers are subprocesses on 127.0.0.1 free ports, run on
both backends; every wait is a bounded poll, nothing asserts a duration."""
from __future__ import annotations

import os
import socket

import pytest

from ringline.redis._resp import encode_command

from support import BACKENDS
from support.kv_repl import dump as _dump, info, load as _load, pause, replica_of, \
    resume, synced, until
from support.kv_server import KvServer, RespConn


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request, monkeypatch):
    monkeypatch.setenv("RINGLINE_BACKEND", request.param)   # the servers inherit it
    return request.param


def test_two_replicas_converge_after_a_write_load():
    with KvServer() as p, replica_of(p) as r1:
        with p.conn() as c:
            keys = _load(c, "a")
            until(lambda: synced(p, r1), what="first replica synced")
            with replica_of(p) as r2:          # joins late: a snapshot, then live frames
                keys += _load(c, "b")
                c.call("FLUSHALL")
                keys = _load(c, "c") + keys
                until(lambda: synced(p, r1, r2), what="replicas synced")
                want = _dump(p.port, keys)
                assert want["dbsize"] > 300
                assert _dump(r1.port, keys) == want
                assert _dump(r2.port, keys) == want
                pi = info(p.port)
                assert pi["connected_slaves"] == "2" and pi["full_syncs"] == "2"
                assert info(r2.port)["role"] == "slave"
                with r2.conn() as rc:       # read-only for clients, fast path included
                    assert str(rc.call("SET", "x", "y")).startswith("READONLY")
                    assert str(rc.call("HSET", "x", "a", "b")).startswith("READONLY")
                    assert rc.call("GET", "x") is None


def test_killed_replica_resumes_from_its_offset_or_gets_a_snapshot():
    with KvServer("--repl-backlog-size", "4096") as p, \
            replica_of(p, "--appendonly", "yes") as r:
        with p.conn() as c:
            _load(c, "a", 20)
            until(lambda: synced(p, r), what="synced")
            r.kill()
            keys = _load(c, "b", 5)                  # fits the 4 KiB backlog
            r.start()
            until(lambda: synced(p, r), what="resynced")
            pi = info(p.port)
            assert (pi["full_syncs"], pi["partial_syncs"]) == ("1", "1")
            ri = info(r.port)
            assert (ri["full_syncs"], ri["partial_syncs"]) == ("0", "1")
            assert _dump(r.port, keys) == _dump(p.port, keys)
            r.kill()
            keys += _load(c, "c", 400)               # far more than the backlog holds
            assert int(info(p.port)["repl_backlog_first_offset"]) > int(ri["slave_repl_offset"])
            r.start()
            until(lambda: synced(p, r), what="resynced after a snapshot")
            pi = info(p.port)
            assert (pi["full_syncs"], pi["partial_syncs"]) == ("2", "1")
            assert _dump(r.port, keys) == _dump(p.port, keys)
            # the full sync started the replica's journal over: it resumes from it
            r.kill()
            keys += _load(c, "d", 3)
            r.start()
            until(lambda: synced(p, r), what="resynced from the new journal")
            pi = info(p.port)
            assert (pi["full_syncs"], pi["partial_syncs"]) == ("2", "2")
            assert _dump(r.port, keys) == _dump(p.port, keys)
            with open(os.path.join(r.dir, "appendonly.rlj"), "rb") as f:
                assert f.read().count(b"$8\r\nREPLSYNC\r\n") == 1    # one snapshot, not two


def test_restarted_replica_without_journal_gets_a_snapshot():
    with KvServer() as p, replica_of(p) as r:
        with p.conn() as c:
            keys = _load(c, "a", 10)
            until(lambda: synced(p, r), what="synced")
            r.kill()
            r.start()
            until(lambda: synced(p, r), what="resynced")
            assert info(p.port)["full_syncs"] == "2"
            assert _dump(r.port, keys) == _dump(p.port, keys)


def _reply_within(sock, seconds):
    """What arrives on sock within seconds (b"" when nothing)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096)
    except socket.timeout:
        return b""


def test_policy_replica_holds_replies_until_a_replica_acked():
    with KvServer("--ack-policy", "replica") as p, replica_of(p) as r:
        with p.conn() as c:
            assert c.call("SET", "k", "0") == b"OK"         # a replica acked it
            assert info(p.port)["repl_acked_offset"] == "1"
            pause(r)
            try:
                s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
                s.sendall(encode_command(("SET", "k", "1")) + encode_command(("GET", "k")))
                assert _reply_within(s, 1.0) == b""          # held: nobody acked
            finally:
                resume(r)
            got = b""
            for _ in range(100):
                got += _reply_within(s, 0.2)
                if got.count(b"\r\n") >= 3:
                    break
            s.close()
            assert got == b"+OK\r\n$1\r\n1\r\n"
            with r.conn() as rc:
                assert rc.call("GET", "k") == b"1"


def test_a_stopped_replica_does_not_stall_k1_with_two_replicas():
    with KvServer("--ack-policy", "replica", "--ack-replicas", "1") as p, \
            replica_of(p) as r1, replica_of(p) as r2:
        until(lambda: info(p.port)["connected_slaves"] == "2", what="two replicas")
        pause(r2)
        try:
            with p.conn(timeout=20) as c:
                for i in range(50):
                    assert c.call("SET", f"k{i}", str(i)) == b"OK"
                assert c.pipeline([("SET", f"p{i}", "v") for i in range(100)]) == [b"OK"] * 100
                lags = [v for k, v in info(p.port).items() if k.startswith("slave")]
                assert len(lags) == 2 and any(",lag=0," in v for v in lags)
        finally:
            resume(r2)
        until(lambda: synced(p, r1, r2), what="the stopped replica catches up")


def test_wait():
    with KvServer() as p:
        with p.conn() as c:
            assert c.call("WAIT", "0", "0") == 0
            assert c.call("SET", "a", "1") == b"OK"
            assert c.call("WAIT", "1", "50") == 0                  # no replica: the timeout
            assert str(c.call("WAIT", "1", "-1")) == "ERR timeout is negative"
            assert str(c.call("WAIT", "x", "0")).startswith("ERR value is not an integer")
            with replica_of(p) as r:
                until(lambda: synced(p, r), what="synced")
                assert c.pipeline([("SET", "a", "2"), ("WAIT", "1", "0"), ("GET", "a")]) \
                    == [b"OK", 1, b"2"]
                assert c.call("WAIT", "2", "100") == 1              # only one exists
                with r.conn() as rc:
                    assert str(rc.call("WAIT", "0", "0")).startswith("ERR WAIT cannot be used")
                pause(r)
                try:
                    assert c.call("SET", "a", "3") == b"OK"          # policy none: at once
                    assert c.call("WAIT", "1", "100") == 0           # not acked yet
                    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
                    s.sendall(encode_command(("SET", "b", "1")) + encode_command(("WAIT", "1", "0"))
                              + encode_command(("PING",)))
                    assert _reply_within(s, 1.0) == b"+OK\r\n"       # WAIT 0 blocks
                finally:
                    resume(r)
                got = b""
                for _ in range(100):
                    got += _reply_within(s, 0.2)
                    if got.endswith(b"+PONG\r\n"):
                        break
                s.close()
                assert got == b":1\r\n+PONG\r\n"


def test_multi_shard_replication_is_per_shard():
    from ringline.kv.slots import key_slot, split
    with KvServer(workers=2) as p, replica_of(p) as r:
        ranges = split(2)

        def shard_of(key):
            slot = key_slot(key.encode())
            return next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)
        keys = [f"key{i}" for i in range(200)]
        for shard in (0, 1):
            with RespConn(p.port + 1 + shard) as c:
                mine = [k for k in keys if shard_of(k) == shard]
                assert mine and c.pipeline([("SET", k, k + "!") for k in mine]) == [b"OK"] * len(mine)

        def shards_synced():
            return all(info(p.port + 1 + i)["master_repl_offset"]
                       == info(r.port + 1 + i).get("slave_repl_offset") for i in (0, 1))
        until(shards_synced, what="both shards synced")
        for shard in (0, 1):
            with RespConn(r.port + 1 + shard) as c:
                for k in keys:
                    want = (k + "!").encode() if shard_of(k) == shard else None
                    got = c.call("GET", k)
                    if want is None:
                        assert str(got).startswith("MOVED")
                    else:
                        assert got == want


def test_policy_disk_and_replica_needs_both():
    with KvServer("--appendonly", "yes", "--ack-policy", "disk+replica") as p, \
            replica_of(p) as r:
        with p.conn() as c:
            assert c.pipeline([("SET", f"k{i}", "v") for i in range(20)]) == [b"OK"] * 20
            pi = info(p.port)
            assert pi["ack_policy"] == "disk+replica"
            assert int(pi["aof_synced"]) >= 20 and int(pi["repl_acked_offset"]) >= 20
        pause(r)
        try:
            s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
            s.sendall(encode_command(("SET", "x", "1")))
            assert _reply_within(s, 1.0) == b""             # on disk, not on a replica
        finally:
            resume(r)
        got = b""
        for _ in range(100):
            got += _reply_within(s, 0.2)
            if got:
                break
        s.close()
        assert got == b"+OK\r\n"


def test_restarted_primary_means_a_full_sync():
    with KvServer("--appendonly", "yes") as p, replica_of(p) as r:
        with p.conn() as c:
            keys = _load(c, "a", 10)
        until(lambda: synced(p, r), what="synced")
        old = info(p.port)["master_replid"]
        p.stop()
        until(lambda: info(r.port)["master_link_status"] == "down", what="link down")
        p.start()                                # recovers its keyspace, new history
        with p.conn() as c:
            keys += _load(c, "b", 10)
        until(lambda: synced(p, r), what="resynced")
        ri = info(r.port)
        assert ri["master_replid"] != old and ri["full_syncs"] == "2"
        assert _dump(r.port, keys) == _dump(p.port, keys)
