"""The replication pieces without I/O: Backlog (offsets, the byte bound,
`since` from the middle of a chunk), FrameReader (partial frames, the
length bound, CRC), snapshot (rebuilds a keyspace), and the DurabilityCursor
under the replica policies (the minimum of disk and replica positions;
Deferred replies keep their place in a ReplyGate)."""
from __future__ import annotations

import pytest

from ringline.kv.backlog import Backlog, FrameError, FrameReader, frame
from ringline.kv.commands import Shard
from ringline.kv.gate import Deferred, DurabilityCursor, ReplyGate
from ringline.kv.repl import WriteLog, snapshot
from ringline.kv.resp import Limits, RequestParser


def test_backlog_offsets_bound_and_since():
    b = Backlog(60)
    f = [frame(b"x%d" % i) for i in range(10)]          # 10 bytes each
    b.append_framed(f[0] + f[1] + f[2], 3)
    b.append_framed(f[3], 1)
    assert (b.start, b.end) == (0, 4)
    assert b.since(0) == b"".join(f[:4])
    assert b.since(2) == f[2] + f[3]                    # from inside a chunk
    assert b.since(4) == b""
    assert b.since(5) is None
    for i in range(4, 10):
        b.append_framed(f[i], 1)
    assert b.bytes <= 60 and b.start > 0 and b.end == 10
    assert b.since(b.start - 1) is None
    assert b.since(b.start) == b"".join(f[b.start:])
    b.append_framed(frame(b"y" * 200), 1)               # one chunk over the bound
    assert (b.start, b.end, b.bytes) == (11, 11, 0)


def test_frame_reader():
    r = FrameReader(16)
    data = frame(b"hello") + frame(b"world!") + frame(b"abc")[:5]
    frames, used, need = r.read(memoryview(data))
    assert [bytes(x[8:]) for x in frames] == [b"hello", b"world!"]
    assert used == 13 + 14 and need == 8                # not even a header yet
    assert r.read(memoryview(frame(b"abc")[:9]))[2] == 11
    assert r.read(memoryview(data), 1)[1] == 13
    with pytest.raises(FrameError):
        r.read(memoryview(frame(b"z" * 17)))
    bad = bytearray(frame(b"hello"))
    bad[-1] ^= 1
    with pytest.raises(FrameError):
        r.read(memoryview(bytes(bad)))


def test_snapshot_rebuilds_the_keyspace():
    src = Shard()
    from ringline.kv.commands import Session
    se = Session(1)
    for cmd in ([b"SET", b"s", b"v"], [b"HSET", b"h", b"a", b"1"], [b"SADD", b"set", b"x"],
                [b"RPUSH", b"l"] + [b"%d" % i for i in range(3000)],
                [b"SET", b"t", b"v", b"EX", b"100"]):
        src.execute(se, cmd)
    frames = snapshot(src.ks)
    assert len(frames) == 1 + 1 + 1 + 3 + 2              # the list in 1024-element chunks
    dst = Shard()
    for f in frames:
        cmds, _ = RequestParser(Limits()).feed(f[8:])
        dst.replay(cmds[0])
    assert dst.ks.data == src.ks.data and dst.ks.expires == src.ks.expires


class _Conn:
    send_queue_bytes = 0

    def __init__(self):
        self.sent = []

    def send_nowait(self, data):
        self.sent.append(data)

    def abort(self):
        self.aborted = True


@pytest.mark.parametrize("policy", ["replica", "disk+replica"])
def test_cursor_replica_policies(policy):
    c = DurabilityCursor(policy, ack_replicas=2)
    conn = _Conn()
    g = ReplyGate(conn, c)
    g.push(b"a", 1)
    g.push(b"b", 2)
    c.advance(2)                      # the disk
    assert conn.sent == ([] if policy == "disk+replica" else [])
    c.replicas_acked(1)
    assert conn.sent == [b"a"]
    c.replicas_acked(5)
    assert conn.sent == [b"a", b"b"]
    assert c.position == (2 if policy == "disk+replica" else 5)


def test_deferred_keeps_its_place():
    c = DurabilityCursor("none")
    conn = _Conn()
    g = ReplyGate(conn, c)
    g.push(b"1", 0)
    d = Deferred()
    g.defer(d)
    g.push(b"3", 0)
    assert conn.sent == [b"1"]
    d.resolve(b"2")
    assert conn.sent == [b"1", b"23"]
    g.push(b"4", 0)
    assert conn.sent[-1] == b"4"


def test_writelog_counts_and_hands_frames_on():
    wl = WriteLog()
    assert wl.append(b"a") == 1 and wl.failed is None
    seen = []
    wl.on_frames = lambda data, count: seen.append((data, count))
    assert wl.append_framed(frame(b"b") + frame(b"c"), 2) == 3
    assert seen == [(frame(b"b") + frame(b"c"), 2)]


def test_deferred_replies_count_against_the_cap():
    c = DurabilityCursor("replica")
    conn = _Conn()
    g = ReplyGate(conn, c, cap=100)
    assert g.defer(Deferred())              # nothing outstanding: always allowed
    assert not g.defer(Deferred())          # 64 + 64 > 100: a client pipelining WAITs
    assert g.closed and conn.aborted and c.dropped == 1
