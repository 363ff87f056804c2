"""Event-loop API, fd watchers: add_reader / add_writer and their removal
(level-triggered readiness, replacement, raw fds, invalid fds, errors and
re-entrancy in callbacks), as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py;
helpers shared with the other test_loop_api_*.py files are in
support/loop_api.py.
"""
import asyncio
import socket

import pytest

from support import run
from support.loop_api import Boom, run_briefly


# ---------------------------------------------------------------------------
# add_reader / add_writer
# ---------------------------------------------------------------------------

@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_add_reader_invoked_with_args(loop, sockpair):
    a, b = sockpair
    got = loop.create_future()

    def on_readable(sock, tag):
        data = sock.recv(100)
        loop.remove_reader(sock)
        got.set_result((tag, data))

    loop.add_reader(a, on_readable, a, "tag")
    loop.call_later(0.02, b.send, b"ping")
    assert run(got, loop=loop) == ("tag", b"ping")
    assert loop.remove_reader(a) is False


def test_add_reader_accepts_raw_fd(loop, sockpair):
    a, b = sockpair
    got = loop.create_future()

    def on_readable():
        got.set_result(a.recv(100))

    loop.add_reader(a.fileno(), on_readable)
    b.send(b"fd")
    try:
        assert run(got, loop=loop) == b"fd"
    finally:
        assert loop.remove_reader(a.fileno()) is True


def test_add_reader_not_called_when_idle(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, 1)
    run_briefly(loop, 0.05)
    assert calls == []
    assert loop.remove_reader(a) is True


def test_add_reader_is_level_triggered(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, 1)  # never consumes the data
    b.send(b"x")
    run_briefly(loop, 0.05)
    assert loop.remove_reader(a) is True
    assert len(calls) >= 2
    n = len(calls)
    run_briefly(loop, 0.02)
    assert len(calls) == n  # removal stops the callbacks
    assert a.recv(10) == b"x"


def test_remove_reader_return_values(loop, sockpair):
    a, b = sockpair
    assert loop.remove_reader(a) is False
    loop.add_reader(a, lambda: None)
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_remove_reader_stops_callbacks(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, 1)
    assert loop.remove_reader(a) is True
    b.send(b"data")
    run_briefly(loop, 0.05)
    assert calls == []


def test_add_reader_replaces_previous_callback(loop, sockpair):
    a, b = sockpair
    calls = []
    got = loop.create_future()

    def second(tag):
        calls.append(tag)
        a.recv(100)
        if not got.done():
            got.set_result(None)

    loop.add_reader(a, calls.append, "first")
    loop.add_reader(a, second, "second")
    b.send(b"data")
    try:
        run(got, loop=loop)
    finally:
        assert loop.remove_reader(a) is True
    assert calls == ["second"]


def test_add_writer_invoked_with_args(loop, sockpair):
    a, b = sockpair
    got = loop.create_future()

    def on_writable(tag):
        loop.remove_writer(a)
        a.send(b"w")
        got.set_result(tag)

    loop.add_writer(a, on_writable, "w-tag")
    assert run(got, loop=loop) == "w-tag"
    assert loop.remove_writer(a) is False
    assert b.recv(10) == b"w"


def test_remove_writer_return_values(loop, sockpair):
    a, b = sockpair
    assert loop.remove_writer(a) is False
    loop.add_writer(a, lambda: None)
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False


def test_add_writer_waits_for_buffer_space(loop, sockpair):
    a, b = sockpair
    # fill a's send buffer
    try:
        while True:
            a.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    calls = []
    loop.add_writer(a, calls.append, "writable")
    try:
        run_briefly(loop, 0.05)
        assert calls == []

        async def drain():
            while True:
                try:
                    b.recv(1 << 20)
                except BlockingIOError:
                    break
            for _ in range(50):
                if calls:
                    return
                await asyncio.sleep(0.01)

        run(drain(), loop=loop)
        assert calls
    finally:
        loop.remove_writer(a)


def test_reader_and_writer_on_same_fd(loop, sockpair):
    a, b = sockpair
    events = []
    done = loop.create_future()

    def on_write():
        events.append("w")
        loop.remove_writer(a)

    def on_read():
        events.append("r")
        a.recv(10)
        loop.remove_reader(a)
        done.set_result(None)

    loop.add_reader(a, on_read)
    loop.add_writer(a, on_write)
    loop.call_later(0.03, b.send, b"r")
    run(done, loop=loop)
    assert events == ["w", "r"]
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_add_reader_after_close_raises(loop, sockpair):
    a, b = sockpair
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_reader(a, lambda: None)
    with pytest.raises(RuntimeError):
        loop.add_writer(a, lambda: None)


def test_add_reader_invalid_fd(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, lambda: None)
    with pytest.raises((TypeError, ValueError)):
        loop.add_reader("not an fd", lambda: None)


# ---------------------------------------------------------------------------
# fd watchers: errors and re-entrancy in callbacks
# ---------------------------------------------------------------------------


def test_exception_in_reader_callback_goes_to_handler(loop, sockpair):
    a, b = sockpair
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    calls = []

    def bad_reader():
        calls.append(a.recv(10))
        raise Boom("in reader")

    loop.add_reader(a, bad_reader)
    try:
        b.send(b"1")
        run_briefly(loop, 0.03)
        b.send(b"2")
        run_briefly(loop, 0.03)
    finally:
        loop.remove_reader(a)
    # the reader stays registered after raising
    assert calls == [b"1", b"2"]
    assert [str(c["exception"]) for c in contexts] == ["in reader"] * 2


def test_reader_callback_replaces_itself(loop, sockpair):
    a, b = sockpair
    calls = []
    got = loop.create_future()

    def second():
        calls.append(("second", a.recv(10)))
        loop.remove_reader(a)
        got.set_result(None)

    def first():
        calls.append(("first", a.recv(10)))
        loop.remove_reader(a)
        loop.add_reader(a, second)

    loop.add_reader(a, first)
    b.send(b"x")
    run_briefly(loop, 0.02)
    b.send(b"y")
    run(got, loop=loop)
    assert calls == [("first", b"x"), ("second", b"y")]
