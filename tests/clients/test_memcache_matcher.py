"""memcache._matcher without any socket or loop: replies (from bytes through
ResponseParser) in, resolved targets out. Targets are concurrent.futures
Futures (the matcher only needs done/set_result/set_exception) or _Fired."""
import random
from concurrent.futures import Future

import pytest

from ringline import ConnectionClosed
from ringline.memcache import _matcher as m
from ringline.memcache._proto import (ClientError, CommandError, Item, MetaResult,
                                      ProtocolError, ResponseParser, ServerError)


def feed(matcher, wire):
    """Parse `wire` and dispatch the replies (one batch, as the client does)."""
    parser = ResponseParser()
    replies = parser.feed(wire)
    matcher.dispatch(replies)
    return parser


def expect(matcher, conv):
    f = Future()
    matcher.expect(conv, f)
    return f


def outcome(f):
    e = f.exception(timeout=0)
    return e if e is not None else f.result(timeout=0)


# -- converters ------------------------------------------------------------------

@pytest.mark.parametrize("conv, reply, result", [
    (m._c_stored, b"STORED", True), (m._c_stored, b"NOT_STORED", False),
    (m._c_cas, b"STORED", True), (m._c_cas, b"EXISTS", False), (m._c_cas, b"NOT_FOUND", None),
    (m._c_incr, b"42", 42), (m._c_incr, b"NOT_FOUND", None),
    (m._c_deleted, b"DELETED", True), (m._c_deleted, b"NOT_FOUND", False),
    (m._c_touched, b"TOUCHED", True), (m._c_touched, b"NOT_FOUND", False),
    (m._c_ok, b"OK", None), (m._c_version, b"VERSION 1.6.21", "1.6.21"),
    (m._c_stats, {"pid": "1"}, {"pid": "1"}), (m._c_stats, [], {}),
    (m._c_get, [], None), (m._c_get, [(b"k", 0, b"v", None)], b"v"),
    (m._c_get_item, [(b"k", 3, b"v", 9)], Item(b"k", b"v", 3, 9)),
    (m._c_get_many, [(b"a", 0, b"1", None), (b"b", 0, b"2", None)], {b"a": b"1", b"b": b"2"}),
    (m._c_gets_many, [(b"a", 1, b"1", 5)], {b"a": Item(b"a", b"1", 1, 5)}),
    (m._c_meta, MetaResult("HD"), MetaResult("HD")), (m._c_mn, MetaResult("MN"), None),
])
def test_converters_turn_replies_into_results(conv, reply, result):
    assert conv(reply) == result


@pytest.mark.parametrize("conv, reply", [
    (m._c_stored, b"DELETED"), (m._c_incr, b"STORED"), (m._c_deleted, []),
    (m._c_version, b"OK"), (m._c_get, b"STORED"), (m._c_meta, MetaResult("MN")),
    (m._c_mn, MetaResult("HD")), (m._c_stats, b"END"), (m._c_touched, MetaResult("HD")),
])
def test_a_reply_of_the_wrong_kind_is_a_protocol_error(conv, reply):
    with pytest.raises(ProtocolError, match="unexpected reply"):
        conv(reply)


def test_client_error_to_a_storage_command_closes_rather_than_fails_one_command():
    with pytest.raises(ProtocolError, match="read as a command"):
        m._c_stored(ClientError("CLIENT_ERROR bad data chunk"))
    with pytest.raises(ProtocolError, match="read as a command"):
        m._c_meta_set(ClientError("CLIENT_ERROR bad data chunk"))
    with pytest.raises(ServerError):               # a plain reply error: only this command
        m._c_stored(ServerError("SERVER_ERROR out of memory"))


# -- the FIFO ------------------------------------------------------------------

def test_replies_resolve_commands_in_order_across_splits():
    mt = m.ReplyMatcher("test")
    futs = [expect(mt, m._c_stored), expect(mt, m._c_get_many), expect(mt, m._c_incr),
            expect(mt, m._c_version)]
    wire = b"STORED\r\nVALUE a 0 2\r\nxy\r\nEND\r\n7\r\nVERSION 1.6\r\n"
    parser = ResponseParser()
    for i in range(0, len(wire), 5):
        mt.dispatch(parser.feed(wire[i:i + 5]))
    assert [outcome(f) for f in futs] == [True, {b"a": b"xy"}, 7, "1.6"]
    assert not mt.fifo and mt.progress == (len(wire) + 4) // 5


def test_an_error_reply_fails_only_its_own_command():
    mt = m.ReplyMatcher("test")
    a, b, c = expect(mt, m._c_stored), expect(mt, m._c_deleted), expect(mt, m._c_ok)
    feed(mt, b"SERVER_ERROR out of memory\r\nERROR\r\nOK\r\n")
    assert isinstance(outcome(a), ServerError) and isinstance(outcome(b), CommandError)
    assert outcome(c) is None and not mt.blamed


def test_an_unsolicited_reply_is_a_protocol_error():
    mt = m.ReplyMatcher("test")
    with pytest.raises(ProtocolError, match="unsolicited"):
        feed(mt, b"STORED\r\n")


def test_a_reply_that_does_not_fit_blames_its_command_and_fail_resolves_the_rest():
    mt = m.ReplyMatcher("addr")
    head, rest = expect(mt, m._c_deleted), expect(mt, m._c_stored)
    fired = m._Fired("t")
    mt.expect(m._c_stored, fired)
    with pytest.raises(ProtocolError) as ei:
        feed(mt, b"STORED\r\n")
    assert outcome(head) is ei.value and mt.blamed
    mt.fail(ei.value)
    err = outcome(rest)
    assert isinstance(err, ConnectionClosed) and err.__cause__ is ei.value
    assert "addr" in str(err) and "ProtocolError" in str(err)
    tag, res = mt.done.popleft()
    assert tag == "t" and isinstance(res, ConnectionClosed) and not mt.fifo


def test_fail_gives_the_head_the_error_itself_when_its_reply_broke():
    mt = m.ReplyMatcher("addr")
    head, rest = expect(mt, m._c_stored), expect(mt, m._c_stored)
    exc = TimeoutError("no reply")
    mt.fail(exc)
    assert outcome(head) is exc and isinstance(outcome(rest), ConnectionClosed)
    mt2 = m.ReplyMatcher("addr")
    f = expect(mt2, m._c_stored)
    mt2.fail(ConnectionClosed("closed by the client"))
    assert isinstance(outcome(f), ConnectionClosed) and "is closed" in str(outcome(f))


def test_a_converter_that_chokes_is_a_protocol_error_for_its_command():
    mt = m.ReplyMatcher()
    f = expect(mt, lambda r: 1 / 0)
    with pytest.raises(ProtocolError, match="could not be converted"):
        feed(mt, b"OK\r\n")
    assert isinstance(outcome(f), ProtocolError) and mt.blamed


def test_a_cancelled_target_still_has_its_reply_checked_then_dropped():
    mt = m.ReplyMatcher()
    gone = expect(mt, m._c_stored)
    gone.cancel()
    after = expect(mt, m._c_stored)
    feed(mt, b"STORED\r\nNOT_STORED\r\n")
    assert outcome(after) is False
    gone2 = expect(mt, m._c_stored)
    gone2.cancel()
    with pytest.raises(ProtocolError):
        feed(mt, b"DELETED\r\n")


def test_fired_results_and_errors_go_to_done_and_wake():
    woken = []
    mt = m.ReplyMatcher(wake=lambda: woken.append(1))
    for tag, conv in (("a", m._c_stored), ("b", m._c_incr)):
        mt.expect(conv, m._Fired(tag))
    feed(mt, b"STORED\r\nCLIENT_ERROR invalid numeric delta argument\r\n")
    assert mt.done[0] == ("a", True)
    assert mt.done[1][0] == "b" and isinstance(mt.done[1][1], ClientError)
    assert len(woken) == 2


# -- quiet commands ------------------------------------------------------------

def test_quiet_entry_adds_an_opaque_token_unless_given():
    mt = m.ReplyMatcher()
    tokens = ["v", "q"]
    e1 = mt.quiet_entry(tokens, "EN", m._c_meta)
    assert tokens == ["v", "q", "O" + e1.opaque] and e1.default == "EN"
    e2 = mt.quiet_entry(["q", "Omine"], "HD", m._c_meta)
    assert e2.opaque == "mine" and e1.opaque != mt.quiet_entry(["q"], "HD", m._c_meta).opaque


def test_quiet_commands_get_their_reply_or_the_suppressed_success_at_the_sync():
    mt = m.ReplyMatcher()
    miss = Future()
    mt.expect(mt.quiet_entry(["v", "q"], "EN", m._c_meta), miss)
    hit = Future()
    e_hit = mt.quiet_entry(["v", "q"], "EN", m._c_meta)
    mt.expect(e_hit, hit)
    stored = Future()
    mt.expect(mt.quiet_entry(["q"], "HD", m._c_meta_set), stored)
    mt.quiet_open = True
    mt.close_quiet_run()
    assert not mt.quiet_open
    after = expect(mt, m._c_stored)
    feed(mt, b"VA 2 O%b\r\nhi\r\nMN\r\nSTORED\r\n" % e_hit.opaque.encode())
    assert outcome(miss) == MetaResult("EN")
    assert outcome(hit) == MetaResult("VA", {"O": e_hit.opaque}, b"hi")
    assert outcome(stored) == MetaResult("HD")
    assert outcome(after) is True and not mt.fifo


def test_errors_after_noreply_commands_are_counted_not_handed_on():
    mt = m.ReplyMatcher("addr")
    mt.close_quiet_run()
    nxt = expect(mt, m._c_stored)
    feed(mt, b"SERVER_ERROR out of memory\r\nCLIENT_ERROR bad\r\nMN\r\nSTORED\r\n")
    assert mt.noreply_errors == 2 and outcome(nxt) is True and not mt.fifo


@pytest.mark.parametrize("wire", [b"STORED\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n", b"42\r\n"])
def test_a_classic_reply_in_a_quiet_run_is_a_protocol_error(wire):
    mt = m.ReplyMatcher()
    f = Future()
    mt.expect(mt.quiet_entry(["q"], "HD", m._c_meta), f)
    mt.close_quiet_run()
    with pytest.raises(ProtocolError):
        feed(mt, wire)


# -- merged gets -------------------------------------------------------------

def merged(mt, *calls):
    b = m._GetBatch()
    mt.expect(m._BATCH, b)
    futs = []
    for key, kind in calls:
        f = Future()
        assert b.add(key, kind, f)
        futs.append(f)
    return b, futs


def test_merged_get_line_and_delivery_to_each_caller():
    mt = m.ReplyMatcher()
    b, (v, item, casitem, again) = merged(
        mt, (b"a", m._AS_VALUE), (b"b", m._AS_ITEM), (b"b", m._AS_CAS_ITEM), (b"a", m._AS_VALUE))
    assert b.line() == b"gets a b\r\n"
    feed(mt, b"VALUE b 4 1 77\r\nB\r\nEND\r\n")
    assert outcome(v) is None and outcome(again) is None
    assert outcome(item) == Item(b"b", b"B", 4, None)
    assert outcome(casitem) == Item(b"b", b"B", 4, 77)


def test_merged_get_line_is_bounded():
    b = m._GetBatch()
    n = 0
    while b.add(b"%0200d" % n, m._AS_VALUE, None):
        n += 1
    assert len(b.line()) <= m._BATCH_BYTES and n == len(b.keys)
    assert b.add(b"%0200d" % 0, m._AS_VALUE, None)       # a key already in it always fits
    small = m._GetBatch()
    k = 0
    while small.add(b"%d" % k, m._AS_VALUE, None):
        k += 1
    assert len(small.keys) <= m._BATCH_KEYS


def test_merged_get_error_reply_reaches_every_caller():
    mt = m.ReplyMatcher()
    _, futs = merged(mt, (b"a", m._AS_VALUE), (b"b", m._AS_ITEM))
    feed(mt, b"SERVER_ERROR busy\r\n")
    errs = [outcome(f) for f in futs]
    assert all(isinstance(e, ServerError) for e in errs) and errs[0] is not errs[1]
    assert not mt.blamed


@pytest.mark.parametrize("wire", [b"VALUE zz 0 1\r\nx\r\nEND\r\n",              # not asked for
                                  b"VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\nEND\r\n",  # twice
                                  b"STORED\r\n"])
def test_a_merged_get_reply_that_does_not_fit_fails_every_caller(wire):
    mt = m.ReplyMatcher()
    _, futs = merged(mt, (b"a", m._AS_VALUE), (b"b", m._AS_CAS_ITEM))
    with pytest.raises(ProtocolError) as ei:
        feed(mt, wire)
    assert all(outcome(f) is ei.value for f in futs) and mt.blamed


# -- hostile input ----------------------------------------------------------

def test_random_garbage_never_leaves_a_target_unresolved():
    rng = random.Random(1515)
    pieces = [b"STORED\r\n", b"END\r\n", b"VALUE a 0 1\r\nx\r\n", b"MN\r\n", b"HD\r\n",
              b"EN\r\n", b"VA 1\r\nz\r\n", b"ERROR\r\n", b"42\r\n", b"\r\n", b"\x00\xff",
              b"STAT x 1\r\n", b"CLIENT_ERROR no\r\n", b"VALUE a 0 99999999999\r\n"]
    convs = [m._c_stored, m._c_get_many, m._c_meta, m._c_incr, m._c_stats, m._c_mn]
    for _ in range(300):
        mt = m.ReplyMatcher()
        futs = []
        for _ in range(rng.randint(0, 6)):
            kind = rng.random()
            f = Future()
            if kind < 0.2:
                mt.expect(mt.quiet_entry(["q"], "HD", m._c_meta), f)
            elif kind < 0.35:
                b = m._GetBatch()
                b.add(b"a", m._AS_VALUE, f)
                mt.expect(m._BATCH, b)
            else:
                mt.expect(rng.choice(convs), f)
            futs.append(f)
            if rng.random() < 0.2:
                mt.close_quiet_run()
        wire = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        parser = ResponseParser(max_value=64)
        try:
            step = rng.randint(1, 9)
            for i in range(0, len(wire), step):
                mt.dispatch(parser.feed(wire[i:i + step]))
            parser.eof()
            mt.fail(ConnectionClosed("peer closed"))
        except ProtocolError as exc:
            mt.fail(exc)
        assert all(f.done() for f in futs) and not mt.fifo
