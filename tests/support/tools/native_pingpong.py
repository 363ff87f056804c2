"""Native-API ping-pong inside one process: a Listener+Conn echo server and a
ringline.connect client exchange N 64-byte messages (argv[1]); 0 = start-up
and teardown only (the strace baseline)."""
import asyncio
import socket
import sys

import ringline
from ringline._conn import api as _native


async def main(n):
    loop = asyncio.get_running_loop()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    tasks = []

    async def echo(conn):
        def on_data(view):
            conn.send_nowait(bytes(view))
            return len(view)
        while await conn.with_data(on_data):
            pass
        conn.close()

    def on_fd(fd):
        tasks.append(loop.create_task(echo(_native.adopt_fd(loop, fd, socket.AF_INET))))
    listener = _native.Listener(loop, lsock, on_fd)
    conn = await ringline.connect(lsock.getsockname())
    msg = b"m" * 64
    got = [0]

    def take(view):
        got[0] += len(view)
        return len(view)
    for _ in range(n):
        conn.send_nowait(msg)
        target = got[0] + 64
        while got[0] < target:
            await conn.with_data(take)
    conn.close()
    listener.close()
    lsock.close()
    await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()


ringline.run(main(int(sys.argv[1])))
