"""ringline.kv's parts on their own: the request parser, the keyspace's
expiry, the Journal (group commit, CRC, torn tails) and the ReplyGate
(ordering, release by the cursor, the slow-client cap)."""
from __future__ import annotations

import os
import struct

import pytest

from ringline.kv.gate import DurabilityCursor, ReplyGate
from ringline.kv.journal import HEADER, Journal, JournalError
from ringline.kv.resp import Limits, Map, NULL_ARRAY, RequestParser, SetReply, encode
from ringline.kv.slots import crc16, key_slot, split
from ringline.kv.store import Keyspace


# -- request parser -------------------------------------------------------------

def test_parser_every_split_gives_the_same_commands():
    data = (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
            b"PING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\n\r\n")
    want = [[b"SET", b"k", b"hello"], [b"PING"], [b"GET", b"k"]]
    for cut in range(len(data) + 1):
        p = RequestParser()
        got, used = p.feed(data[:cut])
        rest = data[used:]
        more, used2 = p.feed(rest)
        assert got + more == want and used2 == len(rest), cut


def test_parser_reports_the_size_an_incomplete_bulk_needs():
    p = RequestParser()
    cmds, used = p.feed(b"*2\r\n$3\r\nGET\r\n$100\r\nabc")
    assert (cmds, used) == ([], 0)
    assert p.want == len(b"*2\r\n$3\r\nGET\r\n$100\r\n") + 102


def test_parser_limits():
    lim = Limits(max_bulk=10, max_args=3, max_inline=20, max_request=40)
    for data, text in [(b"*4\r\n", "invalid multibulk length"),
                       (b"*1\r\n$11\r\n", "invalid bulk length"),
                       (b"x" * 21, "too big inline request"),
                       (b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n",
                        "request too big")]:
        p = RequestParser(lim)
        cmds, used = p.feed(data)
        assert cmds == [] and used == len(data)
        assert text in str(p.error), data


def test_encode_resp2_and_resp3():
    assert encode(None, 2) == b"$-1\r\n" and encode(None, 3) == b"_\r\n"
    assert encode(NULL_ARRAY, 2) == b"*-1\r\n"
    assert encode(Map([b"a", 1]), 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encode(Map([b"a", 1]), 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert encode(SetReply([b"x"]), 3) == b"~1\r\n$1\r\nx\r\n"
    assert encode([1, [b""]], 2) == b"*2\r\n:1\r\n*1\r\n$0\r\n\r\n"


def test_slots():
    assert key_slot(b"foo") == 12182
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    assert key_slot(b"{}x") == crc16(b"{}x") % 16384      # an empty tag is no tag
    ranges = split(3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(ranges[i][1] + 1 == ranges[i + 1][0] for i in range(2))


# -- keyspace expiry ----------------------------------------------------------------

def test_lazy_and_active_expiry():
    ks = Keyspace()
    now = [1_000_000]
    ks.clock = lambda: now[0]
    for i in range(1000):
        ks.set(b"k%d" % i, b"v")
        ks.expire_at(b"k%d" % i, now[0] + 10 + i)
    ks.set(b"keep", b"v")
    now[0] += 500
    assert ks.lookup(b"k0") is None                 # lazy
    assert ks.lookup(b"k600") == b"v"
    assert ks.active_expire(budget=100) == 100      # bounded work per call
    while ks.active_expire(budget=100):
        pass
    assert len(ks) == 510               # k0..k490 expired, k491..k999 and keep left
    assert all(ks.lookup(b"k%d" % i) == b"v" for i in range(491, 1000))
    # re-set deadlines leave stale heap entries that are skipped and bounded
    for _ in range(50):
        ks.expire_at(b"keep", now[0] + 10_000)
    assert len(ks._heap) <= 2 * len(ks.expires) + 64


# -- journal ------------------------------------------------------------------------

def _records(path):
    got = []
    Journal.recover(path, got.append)
    return got


def test_journal_group_commit_and_recovery(tmp_path):
    path = str(tmp_path / "j")
    durable = []
    j = Journal.open(path, on_durable=durable.append)
    seqs = [j.append(b"rec%d" % i) for i in range(10)]
    assert seqs == list(range(1, 11)) and j.synced == 0
    j.commit()                        # one write + one fdatasync for all ten
    assert j.synced == 10 and durable == [10] and j.commits == 1
    j.append(b"last")
    j.close()                         # commits what is buffered
    assert _records(path) == [b"rec%d" % i for i in range(10)] + [b"last"]


@pytest.mark.parametrize("tail", [b"\x05", HEADER.pack(100, 0) + b"partial",
                                  HEADER.pack(3, 12345) + b"bad"])
def test_journal_torn_tail_is_discarded(tmp_path, tail):
    path = str(tmp_path / "j")
    j = Journal.open(path)
    for i in range(5):
        j.append(b"r%d" % i)
    j.close()
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(tail)
    got = []
    count, dropped = Journal.recover(path, got.append)
    assert (count, dropped) == (5, len(tail)) and got == [b"r%d" % i for i in range(5)]
    assert os.path.getsize(path) == size           # truncated to the last good record
    j = Journal.open(path)
    j.append(b"after")
    j.close()
    assert _records(path)[-1] == b"after"


def test_journal_stops_at_a_corrupt_record_in_the_middle(tmp_path):
    path = str(tmp_path / "j")
    j = Journal.open(path)
    for i in range(5):
        j.append(b"r%d" % i)
    j.close()
    with open(path, "r+b") as f:
        f.seek(2 * (HEADER.size + 2) + HEADER.size)   # the payload of record 2
        f.write(b"X")
    assert _records(path) == [b"r0", b"r1"]


def test_journal_big_records_cross_read_chunks(tmp_path):
    path = str(tmp_path / "j")
    j = Journal.open(path)
    recs = [os.urandom(n) for n in (1, 70000, 3, 200000, 5)]
    for r in recs:
        j.append(r)
    j.close()
    got = []
    assert Journal.recover(path, got.append, chunk=4096) == (5, 0)
    assert got == recs


# -- gate -----------------------------------------------------------------------------

class FakeConn:
    def __init__(self):
        self.sent = []
        self.send_queue_bytes = 0
        self.aborted = False
        self.closed = False

    def send_nowait(self, data):
        self.sent.append(data)

    def abort(self):
        self.aborted = True

    def close(self):
        self.closed = True


def test_gate_releases_in_order_when_the_cursor_passes():
    cur = DurabilityCursor("disk")
    a, b = FakeConn(), FakeConn()
    ga, gb = ReplyGate(a, cur), ReplyGate(b, cur)
    ga.push(b"1", 1)
    gb.push(b"x", 1)
    ga.push(b"2", 2)
    ga.push(b"3", 2)
    ga.push(b"4", 3)
    assert a.sent == [] and b.sent == [] and cur.waiting == {ga, gb}
    cur.advance(2)
    assert a.sent == [b"123"] and b.sent == [b"x"]         # one send per connection
    assert cur.waiting == {ga}
    ga.push(b"5", 2)          # behind a held reply: waits even though covered
    assert a.sent == [b"123"]
    cur.advance(3)
    assert a.sent == [b"123", b"45"] and cur.waiting == set()
    ga.push(b"6", 3)          # nothing held and covered: straight out
    assert a.sent[-1] == b"6"


def test_gate_policy_none_never_holds():
    cur = DurabilityCursor("none")
    c = FakeConn()
    g = ReplyGate(c, cur)
    g.push(b"a", 0)
    assert c.sent == [b"a"] and not cur.waiting


def test_gate_drops_a_slow_client_at_the_cap():
    cur = DurabilityCursor("disk")
    slow, fine = FakeConn(), FakeConn()
    gs, gf = ReplyGate(slow, cur, cap=100), ReplyGate(fine, cur, cap=100)
    slow.send_queue_bytes = 60            # the peer is not reading
    assert gs.push(b"x" * 30, 1)
    assert not gs.push(b"x" * 30, 1)       # 60 unsent + 60 held > 100
    assert slow.aborted and cur.dropped == 1 and gs not in cur.waiting
    assert gf.push(b"y" * 90, 1)
    cur.advance(1)
    assert fine.sent == [b"y" * 90] and not fine.aborted


def test_gate_lets_one_big_reply_through_when_nothing_is_outstanding():
    cur = DurabilityCursor("none")
    c = FakeConn()
    g = ReplyGate(c, cur, cap=100)
    assert g.push(b"z" * 1000, 0)          # a reader asking for a big value
    assert c.sent == [b"z" * 1000] and not c.aborted
    c.send_queue_bytes = 1000             # ... not read yet: the next one is too much
    assert not g.push(b"z", 0) and c.aborted


def test_gate_close_after_sent_waits_for_held_replies():
    cur = DurabilityCursor("disk")
    c = FakeConn()
    g = ReplyGate(c, cur)
    g.push(b"+OK\r\n", 1)
    g.close_after_sent()
    assert not c.closed
    cur.advance(1)
    assert c.sent == [b"+OK\r\n"] and c.closed


def test_a_failed_journal_aborts_the_waiting_connections(tmp_path):
    cur = DurabilityCursor("disk")
    failures = []

    def on_failure(exc):
        failures.append(exc)
        cur.fail()
    j = Journal.open(str(tmp_path / "j"), on_durable=cur.advance, on_failure=on_failure)
    c = FakeConn()
    g = ReplyGate(c, cur)
    g.push(b"+OK\r\n", j.append(b"w"))
    os.close(j.fd)                        # the next write fails (EBADF)
    with pytest.raises(JournalError):
        j.commit()
    assert failures and c.aborted and c.sent == [] and not cur.waiting
    with pytest.raises(JournalError):
        j.append(b"more")
    j.fd = -1


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="ack policy must be one of"):
        DurabilityCursor("replicas")
    with pytest.raises(ValueError, match="ack_replicas"):
        DurabilityCursor("replica", ack_replicas=0)


def test_record_header_layout():
    assert HEADER.size == 8 and HEADER.format in ("<II", b"<II")
    assert struct.calcsize("<II") == 8
