"""An echo load on one ringline loop: a create_server echo server and C
concurrent create_connection clients, each doing M send / await-echo round
trips of S-byte messages. Used by tests/loop/test_transport_acceptance_load.py under
`strace -f -c`.

Usage: echo_load.py CONNECTIONS MESSAGES [SIZE]

Prints one line to stdout: ``messages=<n> enters=<n> iterations=<n>
submitted=<n>`` (messages counts one direction: CONNECTIONS x MESSAGES).
"""
import asyncio
import sys

import ringline


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _PingClient(asyncio.Protocol):
    """Sends one message, waits for all of its echo, sends the next."""

    def __init__(self, messages, size, done):
        self.left = messages
        self.msg = b"m" * size
        self.size = size
        self.got = 0
        self.done = done

    def connection_made(self, transport):
        self.transport = transport

    def start(self):
        if self.left:
            self.transport.write(self.msg)
        else:
            self.transport.close()

    def data_received(self, data):
        self.got += len(data)
        while self.got >= self.size:
            self.got -= self.size
            self.left -= 1
            if self.left:
                self.transport.write(self.msg)
            else:
                self.transport.close()

    def connection_lost(self, exc):
        if not self.done.done():
            if self.left:
                self.done.set_exception(exc or ConnectionError(f"{self.left} left"))
            else:
                self.done.set_result(None)


async def main(conns: int, messages: int, size: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoServer, "127.0.0.1", 0, backlog=conns + 16)
    port = server.sockets[0].getsockname()[1]
    dones, clients = [], []
    for _ in range(conns):      # connect all first, then run them concurrently
        done = loop.create_future()
        dones.append(done)
        _, client = await loop.create_connection(
            lambda d=done: _PingClient(messages, size, d), "127.0.0.1", port)
        clients.append(client)
    for client in clients:
        client.start()
    await asyncio.wait_for(asyncio.gather(*dones), 120)
    server.close()
    await server.wait_closed()
    stats = loop._ring_stats()
    print(f"messages={conns * messages} enters={stats['enters']} "
          f"iterations={stats['iterations']} submitted={stats['submitted']}")


if __name__ == "__main__":
    ringline.run(main(int(sys.argv[1]), int(sys.argv[2]),
                      int(sys.argv[3]) if len(sys.argv) > 3 else 64))
