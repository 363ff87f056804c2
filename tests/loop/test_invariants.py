"""docs/invariants.md, invariant 2, on whichever backend the test pass runs
(RINGLINE_BACKEND): every completion is matched to its operation through a
generation-checked token; a stale or unknown completion is counted and
dropped, never dispatched to the new owner of a reused slot."""
import asyncio
import socket

import ringline

SLOT = 0xFFFFFFFF


def test_stale_completion_is_dropped_not_given_to_the_slots_new_owner():
    loop = ringline.new_event_loop()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    for s in (a, b, c, d):
        s.setblocking(False)

    async def started(coro):
        before = set(loop._inflight_user_data())
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)              # the operation is now registered
        new = set(loop._inflight_user_data()) - before
        assert len(new) == 1, new
        return task, new.pop()

    async def main():
        first, ud_first = await started(loop.sock_recv(b, 100))
        a.send(b"first")
        assert await asyncio.wait_for(first, 5) == b"first"

        second, ud_second = await started(loop.sock_recv(d, 100))
        # the slot was reused under a new generation
        assert ud_second & SLOT == ud_first & SLOT
        assert ud_second != ud_first

        stale_before = loop._ring_stats()["stale_cqes"]
        loop._inject_cqe(ud_first, 5, 0)              # old generation, same slot
        loop._inject_cqe((7 << 32) | 0xFFFFFF, 3, 0)  # a slot nobody owns
        await asyncio.sleep(0)
        assert not second.done()                      # not dispatched to the new owner
        assert loop._ring_stats()["stale_cqes"] == stale_before + 2

        c.send(b"second")                             # the real completion still lands
        assert await asyncio.wait_for(second, 5) == b"second"

    try:
        loop.run_until_complete(main())
    finally:
        for s in (a, b, c, d):
            s.close()
        loop.close()
