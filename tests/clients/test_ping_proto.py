"""ringline.ping._proto without any socket: PONG counting, the FIFO of
pending pings and the server's answers, malformed and endless input included."""
import collections
import random
from concurrent.futures import Future

import pytest

from ringline.ping import ProtocolError
from ringline.ping._proto import PING, PONG, UNKNOWN, answer, count_pongs, settle


@pytest.mark.parametrize("data, n", [(b"", 0), (b"PO", 0), (PONG, 1), (PONG * 3 + b"PON", 3),
                                     (PONG * 2 + b"P", 2)])
def test_count_pongs_counts_whole_lines_and_leaves_a_prefix(data, n):
    assert count_pongs(data) == n


@pytest.mark.parametrize("data, shown", [(b"PONK\r\n", b"PONK"), (PONG + b"PING\r\n", b"PING"),
                                         (PONG + b"X", b"X"), (b"pong\r\n", b"pong"),
                                         (PONG * 2 + b"PONG\n", b"PONG\n")])
def test_anything_but_pong_is_a_protocol_error_naming_it(data, shown):
    with pytest.raises(ProtocolError, match="expected PONG") as ei:
        count_pongs(data)
    assert repr(shown)[2:-1] in str(ei.value)


def test_settle_resolves_pings_in_order_with_their_round_trip():
    pending = collections.deque()
    futs = [Future() for _ in range(3)]
    for f, (n, t0) in zip(futs, [(1, 1.0), (3, 2.0), (1, 3.0)]):
        pending.append([n, t0, f])
    settle(pending, 2, 10.0)          # the single ping and one of the three
    assert futs[0].result(0) == 9.0 and not futs[1].done() and pending[0][0] == 2
    settle(pending, 3, 20.0)
    assert futs[1].result(0) == 18.0 and futs[2].result(0) == 17.0 and not pending
    with pytest.raises(ProtocolError, match="1 PONG replies with no ping pending"):
        settle(pending, 1, 30.0)


def test_settle_skips_a_ping_whose_caller_gave_up():
    pending = collections.deque()
    gone, kept = Future(), Future()
    gone.cancel()
    pending.extend([[1, 0.0, gone], [1, 0.0, kept]])
    settle(pending, 2, 1.0)
    assert kept.result(0) == 1.0 and not pending


@pytest.mark.parametrize("data, out, pos", [
    (PING * 3, PONG * 3, 18), (b"ping\nPiNg\r\nhello\r\n", PONG * 2 + UNKNOWN, 18),
    (PING + b"PIN", PONG, 6), (b"", b"", 0), (b"\n", UNKNOWN, 1)])
def test_answer_gives_one_answer_per_complete_line(data, out, pos):
    assert answer(data, 1024) == (out, pos, False)


def test_an_endless_line_is_refused_beyond_max_line():
    assert answer(b"x" * 10, 10) == (b"", 0, False)
    assert answer(PING + b"x" * 11, 10) == (b"", 17, True)


def test_random_input_is_answered_consistently_however_it_is_split():
    rng = random.Random(7)
    pieces = [PING, b"ping\n", b"PONG\r\n", b"\r\n", b"\n", b"xyz", b"\x00", b"PI", b"NG\r\n"]
    for _ in range(300):
        wire = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        whole, pos, too_long = answer(wire, 64)
        assert not too_long
        buf, got = b"", b""
        step = rng.randint(1, 7)
        for i in range(0, len(wire), step):
            buf += wire[i:i + step]
            out, used, _ = answer(buf, 64)
            got += out
            buf = buf[used:]
        assert got == whole and len(buf) == len(wire) - pos
        assert whole.count(b"\r\n") == wire.count(b"\n")
