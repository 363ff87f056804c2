"""BackpressureQueue: the "reader never blocks" pattern over a Channel, on a
ringline loop under both backends (RINGLINE_BACKEND picks one when set)."""
import asyncio
import socket

import pytest

from ringline._errors import QueueFull
from ringline._runtime.channels import BackpressureQueue, Channel, ChannelClosed


def drain_channel(ch):
    out = []
    while len(ch):
        out.append(ch.try_recv())
    return out


def test_constructor_checks():
    with pytest.raises(TypeError):
        BackpressureQueue(object(), 4)
    with pytest.raises(ValueError):
        BackpressureQueue(Channel(1), -1)
    q = BackpressureQueue(Channel(1), 0)
    assert q.cap == 0 and q.backlog == 0 and len(q) == 0 and not q.has_pending


def test_direct_send_when_the_channel_has_room(run):
    async def main():
        ch = Channel(4)
        q = BackpressureQueue(ch, 8)
        q.enqueue_or_send(42)
        assert q.backlog == 0 and not q.has_pending
        assert len(ch) == 1
        assert await ch.recv() == 42
    run(main)


def test_spill_when_full(run):
    async def main():
        ch = Channel(2)
        q = BackpressureQueue(ch, 8)
        for i in (1, 2, 3, 4):
            q.enqueue_or_send(i)
        assert len(ch) == 2 and q.backlog == 2 and len(q) == 2 and q.len() == 2
        assert await ch.recv() == 1
        assert await ch.recv() == 2
        assert q.try_drain() == 2
        assert not q.has_pending
        assert drain_channel(ch) == [3, 4]
    run(main)


def test_queue_full_at_the_cap(run):
    async def main():
        ch = Channel(1)
        q = BackpressureQueue(ch, 2)
        q.enqueue_or_send(1)
        q.enqueue_or_send(2)
        q.enqueue_or_send(3)
        with pytest.raises(QueueFull, match="shed the peer"):
            q.enqueue_or_send(4)
        assert q.backlog == 2                # the refused item was not kept
        assert drain_channel(ch) == [1]
        assert q.try_drain() == 1
        assert drain_channel(ch) == [2]
        assert q.try_drain() == 1
        assert drain_channel(ch) == [3]
    run(main)


def test_cap_zero_allows_no_spill(run):
    async def main():
        ch = Channel(1)
        q = BackpressureQueue(ch, 0)
        q.enqueue_or_send(1)
        with pytest.raises(QueueFull):
            q.enqueue_or_send(2)
    run(main)


def test_order_kept_across_spill_and_drain(run):
    async def main():
        ch = Channel(4)
        q = BackpressureQueue(ch, 8)
        for i in range(1, 6):
            q.enqueue_or_send(i)             # 1..4 direct, 5 spills
        assert q.backlog == 1
        assert drain_channel(ch) == [1, 2, 3, 4]
        # the channel has room now, but 5 is still waiting: 6 goes behind it
        q.enqueue_or_send(6)
        assert q.backlog == 2 and len(ch) == 0
        assert q.try_drain() == 2
        q.enqueue_or_send(7)                 # backlog empty again: direct
        assert q.backlog == 0
        assert drain_channel(ch) == [5, 6, 7]
    run(main)


def test_try_drain_stops_when_the_channel_is_full(run):
    async def main():
        ch = Channel(1)
        q = BackpressureQueue(ch, 8)
        assert q.try_drain() == 0            # empty backlog: no-op
        for i in range(4):
            q.enqueue_or_send(i)
        assert q.try_drain() == 0            # channel still full
        assert q.backlog == 3
        ch.try_recv()
        assert q.try_drain() == 1
        assert q.backlog == 2
    run(main)


def test_draining_when_the_consumer_signals(run):
    """A slow consumer, a producer that never waits, and a drainer woken by
    the consumer's receives: every item arrives once, in order."""
    async def main():
        ch = Channel(3)
        q = BackpressureQueue(ch, 64)
        received = []
        signals = []
        ch.on_recv(lambda: signals.append(1))
        produced_all = asyncio.Event()

        async def consumer():
            async for item in ch:
                received.append(item)
                await asyncio.sleep(0.001)

        async def drainer():
            while not (produced_all.is_set() and not q.has_pending):
                await q.drained()            # the consumer made room
                q.try_drain()
                if not q.has_pending and not produced_all.is_set():
                    await asyncio.sleep(0.001)

        consumer_task = asyncio.ensure_future(consumer())
        drainer_task = asyncio.ensure_future(drainer())
        for i in range(50):
            q.enqueue_or_send(i)               # never awaits
            assert q.backlog <= 64 and len(ch) <= 3
            if i % 10 == 9:
                await asyncio.sleep(0)
        produced_all.set()
        await asyncio.wait_for(drainer_task, 3)
        ch.close()
        await asyncio.wait_for(consumer_task, 3)
        assert received == list(range(50))
        assert len(signals) == 50
    run(main)


def test_drain_driven_by_the_on_recv_hook(run):
    async def main():
        ch = Channel(2)
        q = BackpressureQueue(ch, 16)
        ch.on_recv(q.try_drain)                # refill on every receive
        for i in range(10):
            q.enqueue_or_send(i)
        assert q.backlog == 8
        got = [await ch.recv() for _ in range(10)]
        assert got == list(range(10))
        assert q.backlog == 0 and len(ch) == 0
    run(main)


def test_flush(run):
    async def main():
        ch = Channel(1)
        q = BackpressureQueue(ch, 8)
        for i in range(5):
            q.enqueue_or_send(i)
        got = []

        async def consumer():
            for _ in range(5):
                got.append(await ch.recv())
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(consumer())
        await asyncio.wait_for(q.flush(), 2)
        assert q.backlog == 0
        await asyncio.wait_for(task, 2)
        assert got == [0, 1, 2, 3, 4]
    run(main)


def test_drained_waits_for_a_receive(run):
    async def main():
        ch = Channel(1)
        q = BackpressureQueue(ch, 4)
        q.enqueue_or_send("a")
        q.enqueue_or_send("b")
        waiter = asyncio.ensure_future(q.drained())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiter.done()
        assert await ch.recv() == "a"
        await asyncio.wait_for(waiter, 1)
        assert q.try_drain() == 1
        assert await ch.recv() == "b"
        await asyncio.wait_for(q.drained(), 1)  # room already: at once
    run(main)


def test_closed_channel(run):
    async def main():
        ch = Channel(1)
        q = BackpressureQueue(ch, 4)
        q.enqueue_or_send(1)
        q.enqueue_or_send(2)
        waiter = asyncio.ensure_future(q.drained())
        await asyncio.sleep(0)
        ch.close()
        await asyncio.wait_for(waiter, 1)      # close wakes drained()
        with pytest.raises(ChannelClosed):
            q.enqueue_or_send(3)
        with pytest.raises(ChannelClosed, match="backlog"):
            q.try_drain()
        with pytest.raises(ChannelClosed):
            await q.flush()
        assert await ch.recv() == 1            # what made it in still drains
        with pytest.raises(ChannelClosed):
            await ch.recv()
        empty = BackpressureQueue(Channel(1), 4)
        empty.channel.close()
        assert empty.try_drain() == 0          # nothing waiting: no error
        with pytest.raises(ChannelClosed):
            empty.enqueue_or_send(1)
    run(main)


def test_reader_never_blocks_on_a_slow_consumer(run):
    """The seed's use: a connection reader keeps reading while the consumer
    stalls, and sheds the peer once the backlog cap is hit."""
    async def main():
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        reader, _writer = await asyncio.open_connection(sock=ours)
        ch = Channel(2)
        q = BackpressureQueue(ch, 4)
        shed = asyncio.Event()

        async def read_loop():
            while True:
                line = await reader.readline()
                if not line:
                    return "eof"
                try:
                    q.enqueue_or_send(line)
                except QueueFull:
                    shed.set()
                    return "shed"

        task = asyncio.ensure_future(read_loop())
        for i in range(10):
            await loop.sock_sendall(peer, b"msg %d\n" % i)
        assert await asyncio.wait_for(task, 2) == "shed"
        assert shed.is_set()
        assert len(ch) == 2 and q.backlog == 4
        assert [ch.try_recv() for _ in range(2)] == [b"msg 0\n", b"msg 1\n"]
        assert q.try_drain() == 2
        peer.close()
        _writer.close()
    run(main)
