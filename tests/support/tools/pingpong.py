"""A sock_sendall/sock_recv ping-pong of N messages on one ringline loop:
both ends are non-blocking sockets driven by the loop's socket operations.
Used by tests/loop/test_syscalls.py under `strace -c -f`."""
import asyncio
import socket
import sys

import ringline


async def main(n: int, size: int) -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    msg = b"x" * size
    for _ in range(n):
        await loop.sock_sendall(a, msg)
        got = 0
        while got < size:
            got += len(await loop.sock_recv(b, size - got))
        await loop.sock_sendall(b, msg)
        got = 0
        while got < size:
            got += len(await loop.sock_recv(a, size - got))
    a.close()
    b.close()
    stats = loop._ring_stats()
    print(f"enters={stats['enters']} iterations={stats['iterations']}", file=sys.stderr)


if __name__ == "__main__":
    ringline.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 64))
