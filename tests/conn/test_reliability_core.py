"""The audit's core findings (issue 12), against the real kernel, on both
backends: send chains beside a nearly full submission queue, writes of
exactly 2^32 bytes, loop.close() with a send in flight, parse callbacks
returning int subclasses. Each of these failed before its fix (see the
commit messages); the fake-completion harness (test_fake_completions.py)
checks the same paths without a kernel.
"""
import asyncio
import enum
import logging
import socket
import threading

import pytest

import ringline
from ringline._conn import api as _native

from support import run


class Sink:
    """A loopback peer in a thread that reads everything and keeps either
    the bytes (keep=True) or only their count."""

    def __init__(self, keep=True):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.keep = keep
        self.data = bytearray()
        self.count = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.lsock.accept()
        buf = bytearray(1 << 20)
        try:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                self.count += n
                if self.keep:
                    self.data += buf[:n]
        finally:
            conn.close()
            self.done.set()

    def close(self):
        self.lsock.close()


# ------------------------------------------------------------ finding 1


def test_chain_beside_a_nearly_full_submission_queue_arrives_in_order():
    """4,000 other operations queued in the same iteration, then the longest
    chain allowed: every record arrives in order and the result is clean.
    Before the fix the records arrived as 0, 26, 27, 1, 28, 2 ... with
    ChainResult.error None."""
    sink = Sink()

    async def main():
        loop = asyncio.get_running_loop()
        c = await ringline.connect(("127.0.0.1", sink.port))
        n = loop.max_chain_links
        assert n == 1024          # a quarter of the default 4096-entry SQ
        results = []
        for rnd in range(3):
            ch = c.send_chain()
            for i in range(n):
                ch.add((rnd * n + i).to_bytes(4, "big"))
            loop._queue_nops(4096 - 60)
            results.append(await ch.submit())
        await c.drain()
        c.close()
        return n, results

    try:
        n, results = run(main())
        assert sink.done.wait(20)
        assert all(r.ok and r.bytes_sent == 4 * n for r in results)
        got = [int.from_bytes(sink.data[i:i + 4], "big")
               for i in range(0, len(sink.data), 4)]
        assert got == list(range(3 * n))
    finally:
        sink.close()


def test_chain_over_the_limit_is_refused_naming_it_and_the_conn_still_works():
    sink = Sink()

    async def main():
        loop = asyncio.get_running_loop()
        c = await ringline.connect(("127.0.0.1", sink.port))
        ch = c.send_chain()
        for i in range(loop.max_chain_links + 1):
            ch.add(b"x")
        with pytest.raises(ValueError, match="max_chain_links"):
            ch.submit()
        res = await c.send_chain().add(b"still ").add(b"usable").submit()
        assert res.ok
        await c.drain()
        c.close()

    try:
        run(main())
        assert sink.done.wait(20)
        assert bytes(sink.data) == b"still usable"
    finally:
        sink.close()


# ------------------------------------------------------------ finding 3


@pytest.mark.parametrize("api", ["transport", "conn"])
def test_write_of_exactly_2_pow_32_bytes_arrives_whole(api):
    """2^32 bytes (calloc'd zero pages: no memory touched) through a
    transport and through a Conn: the peer counts every byte; before the fix
    the length wrapped to 0 and the loop spun forever."""
    size = 1 << 32
    sink = Sink(keep=False)

    async def via_transport():
        loop = asyncio.get_running_loop()
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", sink.port)
        tr.write(bytes(size))
        tr.close()
        while not tr.is_closing() or tr.get_write_buffer_size():
            await asyncio.sleep(0.05)

    async def via_conn():
        loop = asyncio.get_running_loop()
        _native.configure(loop, max_send_queue=1 << 33, send_pool_limit=1 << 34)
        c = await ringline.connect(("127.0.0.1", sink.port))
        c.send_nowait(bytes(size))
        await c.drain()
        c.close()

    try:
        run(via_transport() if api == "transport" else via_conn(), timeout=120)
        assert sink.done.wait(60)
        assert sink.count == size
    finally:
        sink.close()


# ----------------------------------------------------------- finding 11


def test_closing_the_loop_with_a_send_in_flight_is_not_an_error(loop_factory, caplog):
    """A peer that never reads keeps a large send in flight; closing the loop
    then logs nothing and calls no exception handler (stock asyncio just
    stops driving the transport)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    loop = loop_factory()
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    try:
        async def main():
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            tr.write(b"x" * (64 << 20))   # far more than the socket buffers hold
            for _ in range(5):
                await asyncio.sleep(0.01)
            assert tr.get_write_buffer_size() > 0
            return tr
        with caplog.at_level(logging.DEBUG, logger="asyncio"):
            tr = run(main(), loop=loop)
            loop.close()
        assert contexts == []
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        del tr
    finally:
        if not loop.is_closed():
            loop.close()
        lsock.close()


# ----------------------------------------------------------- finding 12d


class Consumed(enum.IntEnum):
    THREE = 3


def feed_once(data, hold=False):
    """A loopback peer in a thread: accepts one connection, sends data,
    (hold: waits for the client to close first) and closes. Returns
    (listening socket, port)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def feed():
        conn, _ = lsock.accept()
        conn.sendall(data)
        if hold:
            conn.recv(1)
        conn.close()
    threading.Thread(target=feed, daemon=True).start()
    return lsock, lsock.getsockname()[1]


def test_parse_callback_returning_an_int_subclass_keeps_the_conn_flowing():
    """A handler returning an IntEnum-like int subclass: counted like an int,
    and a receive paused at the accumulator cap is re-armed (before the fix
    the int-subclass branch never re-armed it and the connection stalled)."""
    total = 1 << 20

    class Count(int):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, recv_accumulator_cap=8192)
        lsock, port = feed_once(b"z" * total)
        c = await ringline.connect(("127.0.0.1", port))
        got = 0

        def take(view):
            nonlocal got
            got += len(view)
            return Count(len(view))
        while await c.with_data(take):
            pass
        c.close()
        lsock.close()
        return got

    assert run(main()) == total


def test_parse_callback_returning_a_bool_is_a_clear_error():
    async def main():
        lsock, port = feed_once(b"abc", hold=True)
        c = await ringline.connect(("127.0.0.1", port))
        try:
            with pytest.raises(TypeError, match="bool"):
                await c.with_data(lambda view: True)
            with pytest.raises(TypeError, match="None"):
                await c.with_data(lambda view: None)
            assert await c.with_data(lambda view: Consumed.THREE) == 3
        finally:
            c.close()
            lsock.close()

    run(main())
