"""Quiet completions on the native connection API (Conn.on_data +
send_nowait): the echo's send completion needs no loop turn of its own, as
on the asyncio face (tests/loop/test_quiet_completions.py). Runs on the
backend RINGLINE_BACKEND selects."""
import asyncio
import socket

from support import run
from support.conn import NativeServer


def test_on_data_echo_exchange_takes_one_loop_turn():
    # Quiet completions (tests/loop/test_quiet_completions.py): the echo's
    # send completion needs no loop turn of its own, on the Conn path too.
    exchanges = 300

    def peer(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(exchanges):
                msg = bytes([i % 251]) * 300
                c.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = c.recv(4096)
                    assert chunk
                    got += chunk
                assert got == msg

    async def main():
        loop = asyncio.get_running_loop()

        async def handler(conn):
            send = conn.send_nowait

            def fn(view):
                send(bytes(view))
                return len(view)
            await conn.on_data(fn)
        srv = NativeServer(handler)
        await asyncio.sleep(0.05)
        before = loop._ring_stats()["iterations"]
        await loop.run_in_executor(None, peer, srv.port)
        turns = loop._ring_stats()["iterations"] - before
        for _ in range(200):
            if all(t.done() for t in srv.tasks):
                break
            await asyncio.sleep(0.01)
        srv.close()
        assert not srv.errors
        return turns
    turns = run(main())
    assert turns < exchanges * 1.5, (turns, exchanges)
