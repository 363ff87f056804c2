"""Quiet completions (LoopCore._mark_quiet, rl_drv_wait in _c/driver.h), on
whichever backend the pass runs (RINGLINE_BACKEND).

A send that took all its bytes and that nothing waits for needs no loop turn
of its own: the wait that follows the flush goes on past its completion. What
must hold:

- a request-response exchange takes one loop turn, not two (the send's
  completion and the next request are reaped together; the native Conn's
  case is tests/conn/test_native_quiet.py);
- anything that does need the loop still ends the wait: a timer falling due,
  call_soon_threadsafe from another thread, a signal, a close() or drain
  waiting on the send (those sends are never marked);
- nothing is lost or reordered: every byte arrives, connection_lost follows a
  write-then-close.
"""
import asyncio
import os
import signal
import socket
import threading
import time

import pytest

import ringline

from support import run

EXCHANGES = 300


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def _client_exchanges(port, n, size=512):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n):
            msg = bytes([i % 251]) * size
            c.sendall(msg)
            got = b""
            while len(got) < size:
                chunk = c.recv(size - len(got))
                assert chunk, "server closed early"
                got += chunk
            assert got == msg


def test_a_request_response_exchange_takes_one_loop_turn():
    loop = ringline.new_event_loop()

    async def main():
        srv = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        await asyncio.sleep(0.05)
        before = loop._ring_stats()["iterations"]
        await loop.run_in_executor(None, _client_exchanges, port, EXCHANGES)
        turns = loop._ring_stats()["iterations"] - before
        srv.close()
        await srv.wait_closed()
        return turns

    try:
        turns = run(main(), loop=loop)
    finally:
        loop.close()
    # two turns per exchange without quiet completions (the send's, then the
    # next request's); the executor's own wakeups add a few
    assert turns < EXCHANGES * 1.5, (turns, EXCHANGES)


def test_a_timer_ends_the_wait_past_a_quiet_send():
    # The server answers (a quiet send) and then nothing happens on any
    # socket: the timer must still fire on time, not wait for more I/O.
    loop = ringline.new_event_loop()

    async def main():
        srv = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        fired = loop.create_future()
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            c.sendall(b"ping")
            await asyncio.sleep(0.05)          # the echo went out
            t0 = loop.time()
            loop.call_later(0.2, fired.set_result, None)
            await asyncio.wait_for(fired, 5)
            waited = loop.time() - t0
            assert c.recv(10) == b"ping"
        finally:
            c.close()
            srv.close()
            await srv.wait_closed()
        return waited

    try:
        waited = run(main(), loop=loop)
    finally:
        loop.close()
    assert waited >= 0.2


@pytest.mark.parametrize("wake", ["call_soon_threadsafe", "signal"])
def test_a_wakeup_from_outside_ends_the_wait_past_a_quiet_send(wake):
    # Another thread sends a request (the loop echoes it: a quiet send), then
    # wakes the loop from outside; no timer is pending, so only that wakeup
    # can end the wait.
    loop = ringline.new_event_loop()

    async def main():
        srv = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        woke = loop.create_future()
        if wake == "signal":
            loop.add_signal_handler(signal.SIGUSR1, woke.set_result, "woken")
        c = socket.create_connection(("127.0.0.1", port), timeout=5)

        def other_thread():
            c.sendall(b"x")
            time.sleep(0.1)
            if wake == "signal":
                os.kill(os.getpid(), signal.SIGUSR1)
            else:
                loop.call_soon_threadsafe(woke.set_result, "woken")

        t = threading.Thread(target=other_thread)
        t.start()
        try:
            assert await asyncio.wait_for(woke, 10) == "woken"
            assert c.recv(10) == b"x"
        finally:
            t.join()
            if wake == "signal":
                loop.remove_signal_handler(signal.SIGUSR1)
            c.close()
            srv.close()
            await srv.wait_closed()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_write_then_close_reports_connection_lost_and_delivers_everything():
    # close() right after the write: the send is not quiet (connection_lost
    # waits for it), and everything arrives before the EOF.
    loop = ringline.new_event_loop()
    payload = os.urandom(200_000)

    class WriteClose(asyncio.Protocol):
        def connection_made(self, transport):
            self.lost = loop.create_future()
            lost_futures.append(self.lost)
            transport.write(payload)
            loop.call_soon(transport.close)

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    lost_futures = []

    async def main():
        srv = await loop.create_server(WriteClose, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]

        def client():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                data = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        return data
                    data += chunk

        data = await loop.run_in_executor(None, client)
        assert data == payload
        assert await asyncio.wait_for(lost_futures[0], 10) is None
        srv.close()
        await srv.wait_closed()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()
