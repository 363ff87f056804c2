"""The native connection API (ringline.Conn) on the backend RINGLINE_BACKEND
selects: receive with parse callbacks, sends, guard parts, send chains, the
slow-client rule, stale handles, connect with timeouts.

Servers are native too (ringline._conn.api.Listener + adopt) or plain asyncio
peers on 127.0.0.1; every wait is bounded."""
import asyncio
import gc
import os
import socket
import struct
import weakref

import pytest

import ringline
from ringline._conn import api as _native
from ringline._core import ChainState

from support import free_port, run
from support.conn import NativeServer, echo, read_exactly

URING = ringline.backend().name == "io_uring"


# ---------------------------------------------------------------- receive

def test_echo_roundtrip_and_peer_addr():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port), timeout=5)
            assert c.is_alive and c.peer_addr == ("127.0.0.1", srv.port)
            for size in (1, 1000, 100_000, 1_000_000):
                payload = os.urandom(size)
                c.send_nowait(payload)
                assert await read_exactly(c, size) == payload
            c.close()
            assert not c.is_alive and c.fileno() == -1
        finally:
            srv.close()
    run(main())


def test_need_at_least_length_prefixed():
    """A length-prefixed protocol: 4-byte length, then the body."""
    async def handler(conn):
        def frame(view):
            if len(view) < 4:
                return ringline.need_at_least(4)
            (n,) = struct.unpack_from("!I", view)
            if len(view) < 4 + n:
                return ringline.need_at_least(4 + n)
            body = bytes(view[4:4 + n])
            conn.send_nowait(struct.pack("!I", len(body)) + body[::-1])
            return 4 + n
        while await conn.with_data(frame):
            pass

    async def main():
        srv = NativeServer(handler)
        try:
            c = await ringline.connect(f"127.0.0.1:{srv.port}")
            bodies = [b"abc", os.urandom(70_000), b"", b"x" * 5]
            wire = b"".join(struct.pack("!I", len(b)) + b for b in bodies)
            # dribble the bytes in small pieces so frames straddle receives
            for i in range(0, len(wire), 997):
                c.send_nowait(wire[i:i + 997])
                await asyncio.sleep(0)
            for b in bodies:
                hdr = await read_exactly(c, 4)
                (n,) = struct.unpack("!I", hdr)
                assert await read_exactly(c, n) == b[::-1]
            c.close()
        finally:
            srv.close()
    run(main())


def test_view_released_after_callback_and_with_bytes_keeps():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            kept = []
            c.send_nowait(b"first-message")
            await c.with_data(lambda v: (kept.append(v), len(v))[1])
            with pytest.raises(ValueError):
                bytes(kept[0])          # released: touching it raises
            held = []

            def keep_slice(view):
                held.append(view[0:6])
                return len(view)
            c.send_nowait(b"second-message")
            await c.with_bytes(keep_slice)
            # more traffic reuses/compacts the accumulator; the slice stays intact
            for _ in range(20):
                c.send_nowait(os.urandom(50_000))
                await read_exactly(c, 50_000)
            assert bytes(held[0]) == b"second"
            assert _native.stats()["chunk_copies"] >= 1
            c.close()
        finally:
            srv.close()
    run(main())


def test_try_with_data_and_eof():
    async def handler(conn):
        conn.send_nowait(b"bye")
        conn.shutdown_write()
        await conn.with_data(lambda v: len(v))

    async def main():
        srv = NativeServer(handler)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            assert c.try_with_data(len) == 0          # nothing yet: never waits
            assert await read_exactly(c, 3) == b"bye"
            assert await c.with_data(len) == 0        # EOF
            assert c.at_eof
            c.close()
        finally:
            srv.close()
    run(main())


def test_bad_parse_callback_results():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            c.send_nowait(b"abc")
            with pytest.raises(ValueError, match="consumed 10 bytes"):
                await c.with_data(lambda v: 10)
            with pytest.raises(TypeError, match="returned None"):
                await c.with_data(lambda v: None)
            with pytest.raises(ValueError):
                ringline.need_at_least(0)
            with pytest.raises(TypeError):
                c.send_nowait("text")
            c.close()
        finally:
            srv.close()
    run(main())


def test_cancel_waiting_reader_and_timeout():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            t = asyncio.ensure_future(c.with_data(len))
            await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await c.with_data(len)
            # the connection still works after both cancellations
            c.send_nowait(b"ping")
            assert await read_exactly(c, 4) == b"ping"
            c.close()
        finally:
            srv.close()
    run(main())


def test_concurrent_readers_rejected():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            t = asyncio.ensure_future(c.with_data(len))
            await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError, match="already waiting"):
                await c.with_data(len)
            t.cancel()
            c.close()
        finally:
            srv.close()
    run(main())


def test_accumulator_cap_pauses_receiving_without_loss():
    """A handler that consumes slowly: the accumulator stops growing at the
    cap (the receive is cancelled; what the kernel already put in provided
    buffers still lands, so the bound is cap + the buffer ring) and every
    byte still arrives in order."""
    cap, nbufs, bufsize = 64 * 1024, 16, 4096

    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, recv_accumulator_cap=cap)
        got = bytearray()
        done = asyncio.Event()
        peak = [0]

        async def handler(conn):
            while True:
                await asyncio.sleep(0.001)
                peak[0] = max(peak[0], conn.buffered)
                n = await conn.with_data(
                    lambda v: (got.extend(v[:8192]), min(len(v), 8192))[1])
                if n == 0:
                    break
            done.set()

        srv = NativeServer(handler)
        try:
            payload = os.urandom(2_000_000)
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(payload)
            w.write_eof()
            await asyncio.wait_for(done.wait(), 20)
            assert not srv.errors, srv.errors
            assert bytes(got) == payload
            assert _native.stats()["recv_pauses"] >= 1
            assert peak[0] <= cap + nbufs * bufsize, peak[0]
            w.close()
        finally:
            srv.close()

    async def bounded():
        return await asyncio.wait_for(main(), 30)
    with asyncio.Runner(loop_factory=lambda: ringline.new_event_loop(
            recv_buffers=nbufs, recv_buffer_size=bufsize)) as runner:
        runner.run(bounded())


# ---------------------------------------------------------------- send

def test_send_future_resolves_after_kernel_took_it():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            f1 = c.send(b"a" * 10)
            f2 = c.send(bytearray(b"b" * 20))
            assert await f1 == 10 and await f2 == 20
            assert await read_exactly(c, 30) == b"a" * 10 + b"b" * 20
            c.close()
        finally:
            srv.close()
    run(main())


def test_slow_client_dropped_at_max_send_queue_others_unaffected():
    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, max_send_queue=1 << 20)
        dropped = []

        async def handler(conn):
            first = await read_exactly(conn, 4)
            if first == b"slow":
                chunk = b"z" * 65536
                try:
                    for _ in range(10_000):
                        conn.send_nowait(chunk)
                        await asyncio.sleep(0)
                except ringline.ConnectionDropped as exc:
                    dropped.append(exc)
                    # every later call names the drop too
                    with pytest.raises(ringline.ConnectionDropped):
                        conn.send_nowait(b"x")
                    with pytest.raises(ringline.ConnectionDropped):
                        await conn.with_data(len)
                return
            conn.send_nowait(first)
            await echo(conn)

        srv = NativeServer(handler)
        try:
            slow = socket.create_connection(("127.0.0.1", srv.port))
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(b"slow")               # and never reads
            good = await ringline.connect(("127.0.0.1", srv.port))
            good.send_nowait(b"good")
            assert await read_exactly(good, 4) == b"good"
            for _ in range(50):
                if dropped:
                    break
                await asyncio.sleep(0.1)
            assert dropped and "max_send_queue" in dropped[0].reason
            assert _native.stats()["dropped_slow"] == 1
            for i in range(100):
                msg = b"m%03d" % i
                good.send_nowait(msg)
                assert await read_exactly(good, 4) == msg
            good.close()
            slow.close()
        finally:
            srv.close()
    run(main())


@pytest.mark.skipif(not URING, reason="zero-copy needs io_uring (the poll backend copies)")
def test_guard_kept_alive_until_zero_copy_notification():
    class Payload(bytearray):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, send_zc_threshold=4096)
        peer_ready = asyncio.Event()
        srv_conn = []

        async def handler(conn):
            srv_conn.append(conn)
            peer_ready.set()
            await conn.with_data(len)

        srv = NativeServer(handler)
        try:
            raw = socket.create_connection(("127.0.0.1", srv.port))
            raw.setblocking(False)
            await peer_ready.wait()
            conn = srv_conn[0]
            obj = Payload(os.urandom(200_000))
            expect = bytes(obj)
            ref = weakref.ref(obj)
            notifs0 = loop.zc_notifs
            fut = conn.send_parts().copy(b"HDR").guard(obj).copy(b"END").submit()
            del obj
            sent = await fut
            assert sent == 200_006
            gc.collect()
            # the peer has not read: the kernel still holds the pages
            assert ref() is not None, "guarded object released before the notification"
            assert _native.stats()["parts_zc"] == 1
            got = bytearray()
            for _ in range(400):
                try:
                    got += raw.recv(1 << 20)
                except BlockingIOError:
                    pass
                if len(got) >= 200_006 and ref() is None:
                    break
                await asyncio.sleep(0.005)
            assert bytes(got) == b"HDR" + expect + b"END"
            gc.collect()
            assert ref() is None, "guarded object never released"
            assert loop.zc_notifs > notifs0
            raw.close()
        finally:
            srv.close()
    run(main())


def test_guard_below_threshold_takes_copy_path():
    class Payload(bytearray):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, send_zc_threshold=1 << 20)
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            obj = Payload(b"q" * 1000)
            ref = weakref.ref(obj)
            before = _native.stats()["parts_copied"]
            fut = c.send_parts().copy(b"<").guard(obj).copy(b">").submit()
            del obj
            gc.collect()
            assert ref() is None          # copied at submit: nothing held
            assert _native.stats()["parts_copied"] == before + 1
            assert _native.stats()["parts_zc"] == 0
            assert await fut == 1002
            assert await read_exactly(c, 1002) == b"<" + b"q" * 1000 + b">"
            c.close()
        finally:
            srv.close()
    run(main())


def test_send_chain_in_order_with_aggregate_result():
    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, send_zc_threshold=8192)
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            big = os.urandom(100_000)
            c.send_nowait(b"<before>")
            notifs0 = loop.zc_notifs
            seen_at_resolve = []
            fut = c.send_chain().add(b"one").guard(big).add(b"three").submit()
            fut.add_done_callback(lambda f: seen_at_resolve.append(loop.zc_notifs))
            c.send_nowait(b"<after>")
            # the echo reads it back, which lets the kernel release the pages
            expect = b"<before>one" + big + b"three<after>"
            assert await read_exactly(c, len(expect)) == expect
            res = await fut
            assert res.bytes_sent == 3 + 100_000 + 5
            assert res.error is None and res.cancelled == 0 and res.ok
            if URING:
                # the zero-copy notification was counted before the chain completed
                assert seen_at_resolve[0] >= notifs0 + 1
                assert _native.stats()["chains"] == 1
            c.close()
        finally:
            srv.close()
    run(main())


def test_send_chain_first_error_cancels_later_links():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            # shut our write side underneath: every send now fails with EPIPE
            dup = socket.socket(fileno=os.dup(c.fileno()))
            dup.shutdown(socket.SHUT_WR)
            dup.close()
            fut = c.send_chain().add(b"a" * 10).add(b"b" * 10).add(b"c" * 10).submit()
            res = await fut
            assert res.bytes_sent == 0
            assert isinstance(res.error, BrokenPipeError)
            assert res.cancelled == 2
            # the stream cannot continue: the connection is dropped
            with pytest.raises(OSError):
                c.send_nowait(b"more")
        finally:
            srv.close()
    run(main())


# fake completions: the chain table's states without a kernel

def test_chain_state_table_states():
    st = ChainState(3, 300)
    assert st.on_op(100, 100) == "pending"
    st.add_notif()
    assert st.on_op(100, 100) == "pending"
    assert st.on_op(100, 100) == "ops_complete"
    assert st.on_notif() == "complete"
    assert (st.bytes_sent, st.first_error, st.cancelled, st.zc_notifs) == (300, 0, 0, 1)

    st = ChainState(3, 300)
    assert st.on_op(-32, 100) == "pending"        # EPIPE on the first link
    assert st.on_op(-125, 100) == "pending"       # later links: ECANCELED
    assert st.on_op(-125, 100) == "complete"
    assert (st.bytes_sent, st.first_error, st.cancelled) == (0, -32, 2)

    st = ChainState(2, 200)
    assert st.on_op(40, 100) == "pending"         # a short link breaks the chain
    assert st.on_op(-125, 100) == "complete"
    assert (st.bytes_sent, st.short_links, st.cancelled) == (40, 1, 1)

    st = ChainState(1, 10)
    with pytest.raises(RuntimeError):
        st.on_notif()                             # a notification nobody expects


# ---------------------------------------------------------------- lifecycle

def test_stale_handle_after_slot_reuse():
    async def main():
        srv = NativeServer(echo)
        try:
            a = await ringline.connect(("127.0.0.1", srv.port))
            slot = a.slot_index
            a.close()
            for _ in range(50):      # wait for the slot to be recycled
                await asyncio.sleep(0.01)
                if _native.stats()["free"] >= 1:
                    break
            b = await ringline.connect(("127.0.0.1", srv.port))
            reused = [c for c in (b,) if c.slot_index == slot]
            assert reused, "the new connection did not reuse the freed slot"
            assert b.gen != a.gen
            for call in (lambda: a.send_nowait(b"x"), lambda: a.send(b"x"),
                         lambda: a.with_data(len), lambda: a.try_with_data(len),
                         lambda: a.peer_addr, lambda: a.shutdown_write()):
                with pytest.raises(ringline.ConnectionClosed):
                    call()
            a.close()          # a no-op: must not close b
            a.abort()
            assert b.is_alive and not a.is_alive
            b.send_nowait(b"still-b")
            assert await read_exactly(b, 7) == b"still-b"
            b.close()
        finally:
            srv.close()
    run(main())


def test_close_drains_queued_sends():
    async def main():
        got = asyncio.get_running_loop().create_future()

        async def handler(conn):
            data = bytearray()
            while await conn.with_data(lambda v: (data.extend(v), len(v))[1]):
                pass
            got.set_result(bytes(data))

        srv = NativeServer(handler)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            payload = os.urandom(3_000_000)
            c.send_nowait(payload)
            c.close()                       # graceful: the bytes still go out
            assert await got == payload
        finally:
            srv.close()
    run(main())


def test_fds_and_slots_return_to_baseline():
    async def main():
        srv = NativeServer(echo)
        fd_dir = "/proc/self/fd"
        try:
            base = len(os.listdir(fd_dir))
            for _ in range(5):
                conns = [await ringline.connect(("127.0.0.1", srv.port)) for _ in range(40)]
                for c in conns:
                    c.send_nowait(b"hi")
                for c in conns:
                    assert await read_exactly(c, 2) == b"hi"
                for c in conns:
                    c.close()
            for _ in range(100):
                await asyncio.sleep(0.01)
                if _native.stats()["live"] == 0 and len(os.listdir(fd_dir)) <= base:
                    break
            st = _native.stats()
            assert st["live"] == 0
            assert len(os.listdir(fd_dir)) <= base
            assert st["slots"] <= 90           # slots are reused, not leaked
        finally:
            srv.close()
    run(main())


# ---------------------------------------------------------------- connect

def test_connect_refused_and_timeout():
    async def main():
        port = free_port()
        with pytest.raises(ConnectionRefusedError):
            await ringline.connect(("127.0.0.1", port), timeout=5)
        # a listener whose backlog is full and never accepts: SYNs go unanswered
        full = socket.socket()
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fport = full.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                f = socket.socket()
                f.setblocking(False)
                try:
                    f.connect(("127.0.0.1", fport))
                except BlockingIOError:
                    pass
                fillers.append(f)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await ringline.connect(("127.0.0.1", fport), timeout=0.3)
            assert loop.time() - t0 < 5
        finally:
            for f in fillers:
                f.close()
            full.close()
        with pytest.raises(ValueError):
            await ringline.connect("no-port-here")

    run(main())


def test_connect_unix(tmp_path):
    async def main():
        path = str(tmp_path / "s.sock")
        loop = asyncio.get_running_loop()
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        lsock.listen(8)
        tasks = []

        def on_fd(fd):
            conn = _native.adopt_fd(loop, fd, socket.AF_UNIX)
            tasks.append(loop.create_task(echo(conn)))
        lst = _native.Listener(loop, lsock, on_fd)
        try:
            c = await ringline.connect_unix(path, timeout=5)
            c.send_nowait(b"unix!")
            assert await read_exactly(c, 5) == b"unix!"
            c.close()
        finally:
            lst.close()
            lsock.close()
            for t in tasks:
                t.cancel()
    run(main())


def test_needs_a_ringline_loop():
    async def main():
        with pytest.raises(RuntimeError, match="ringline event loop"):
            await ringline.connect(("127.0.0.1", 1))
    asyncio.run(main())


def test_close_from_another_task_wakes_the_reader():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            reader = asyncio.ensure_future(c.with_data(len))

            async def closer():
                await asyncio.sleep(0.01)
                c.close()             # runs inside another task
            await closer()
            with pytest.raises(ringline.ConnectionClosed):
                await reader
        finally:
            srv.close()
    run(main())


def test_deep_pipeline_of_small_sends_is_gathered():
    async def main():
        srv = NativeServer(echo)
        try:
            c = await ringline.connect(("127.0.0.1", srv.port))
            parts = [b"%05d;" % i for i in range(5000)]
            for p in parts:
                c.send_nowait(p)
            want = b"".join(parts)
            assert await read_exactly(c, len(want)) == want
            c.close()
        finally:
            srv.close()
    run(main())


def test_push_hands_queued_bytes_to_the_kernel_before_the_iteration_ends():
    """send_nowait queues until the end of the iteration; push() sends now:
    the peer can read the bytes before the coroutine yields to the loop."""
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        conn = await ringline.connect(lsock.getsockname())
        peer, _ = lsock.accept()
        peer.settimeout(5)
        try:
            conn.send_nowait(b"queued")
            peer.setblocking(False)
            with pytest.raises(BlockingIOError):     # not sent yet
                peer.recv(100)
            peer.settimeout(5)
            loop = asyncio.get_running_loop()
            enters = loop._ring_stats()["enters"]
            conn.push()
            # exactly one extra enter: the opt-in exception to "one enter per
            # iteration" (docs/invariants.md, invariant 4)
            assert loop._ring_stats()["enters"] == enters + 1
            assert peer.recv(100) == b"queued"       # without yielding
            conn.push()                              # nothing queued: a no-op
            assert loop._ring_stats()["enters"] == enters + 1
            # a push while a send is in flight leaves the bytes queued behind it
            conn.send_nowait(b"a")
            conn.push()
            conn.send_nowait(b"b")
            conn.push()
            await asyncio.sleep(0.05)
            got = b""
            while len(got) < 2:
                got += peer.recv(100)
            assert got == b"ab"
            conn.close()
            with pytest.raises(ringline.ConnectionClosed):
                conn.push()
        finally:
            peer.close()
            lsock.close()
    run(main())


class _CountingAwait:
    """Wraps an awaitable and counts how often its task resumed it."""

    def __init__(self, aw):
        self.it = aw.__await__()
        self.resumes = 0

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, value):
        self.resumes += 1
        return self.it.send(value)

    def throw(self, *exc):
        self.resumes += 1
        return self.it.throw(*exc)


def _echo_peer(port, messages, expect):
    """A blocking client thread: send each message, read the echo back."""
    import threading
    out = {}

    def run_peer():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            got = b""
            for m in messages:
                s.sendall(m)
                want = len(got) + expect(m)
                while len(got) < want:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            out["got"] = got
    t = threading.Thread(target=run_peer, daemon=True)
    t.start()
    return t, out


def test_on_data_runs_fn_per_arrival_without_resuming_the_task():
    async def main():
        calls = []
        result = {}

        async def handler(conn):
            send = conn.send_nowait

            def fn(view):
                calls.append(len(view))
                send(bytes(view))
                return len(view)
            w = _CountingAwait(conn.on_data(fn))
            result["total"] = await w
            result["resumes"] = w.resumes
        srv = NativeServer(handler)
        messages = [b"m%03d" % i * 10 for i in range(50)]
        t, out = _echo_peer(srv.port, messages, len)
        while t.is_alive():
            await asyncio.sleep(0.01)
        for _ in range(200):
            if "total" in result:
                break
            await asyncio.sleep(0.01)
        srv.close()
        assert not srv.errors
        assert out["got"] == b"".join(messages)
        assert result["total"] == sum(map(len, messages)) == sum(calls)
        assert len(calls) >= 50 // 2                # one call per arrival
        assert result["resumes"] <= 3               # start, (a park,) the EOF
    run(main())


def test_on_data_need_at_least_and_partial_consumption():
    async def main():
        frames = []
        result = {}

        async def handler(conn):
            def fn(view):
                if len(view) < 4:
                    return ringline.need_at_least(4)
                n = struct.unpack_from(">I", view)[0]
                if len(view) < 4 + n:
                    return ringline.need_at_least(4 + n)
                frames.append(bytes(view[4:4 + n]))
                conn.send_nowait(b"ok")
                return 4 + n                        # one frame per call
            result["total"] = await conn.on_data(fn)
        srv = NativeServer(handler)
        payloads = [b"x" * n for n in (0, 1, 100, 70000, 3)]
        wire = [struct.pack(">I", len(p)) + p for p in payloads]
        # two frames in one write and one frame split over two writes
        chunks = [wire[0] + wire[1], wire[2][:5], wire[2][5:], wire[3], wire[4]]
        t, out = _echo_peer(srv.port, chunks, lambda c: 2 * sum(1 for w in wire if w in c)
                            if c != wire[2][:5] else 0)
        while t.is_alive():
            await asyncio.sleep(0.01)
        for _ in range(200):
            if "total" in result:
                break
            await asyncio.sleep(0.01)
        srv.close()
        assert not srv.errors
        assert frames == payloads
        assert result["total"] == sum(map(len, wire))
    run(main())


def test_on_data_ends_with_fn_exception_or_close():
    async def main():
        seen = {}

        async def raising(conn):
            def fn(view):
                if b"boom" in bytes(view):
                    raise ValueError("bad frame")
                return len(view)
            try:
                await conn.on_data(fn)
            except ValueError as exc:
                seen["raised"] = str(exc)

        async def closing(conn):
            def fn(view):
                conn.send_nowait(b"bye")
                conn.close()
                return len(view)
            seen["closed_total"] = await conn.on_data(fn)

        for handler, msg in ((raising, b"fine"), (closing, b"hello")):
            srv = NativeServer(handler)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(msg)
                if handler is raising:
                    await asyncio.sleep(0.05)
                    s.sendall(b"boom")
                else:
                    got = b""
                    while True:
                        await asyncio.sleep(0.01)
                        s.setblocking(False)
                        try:
                            chunk = s.recv(100)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            break
                        got += chunk
                    assert got == b"bye"
                for _ in range(300):
                    if ("raised" if handler is raising else "closed_total") in seen:
                        break
                    await asyncio.sleep(0.01)
            srv.close()
        assert seen["raised"] == "bad frame"
        assert seen["closed_total"] == 5
    run(main())


def test_on_data_can_be_cancelled_and_refuses_a_second_reader():
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        conn = await ringline.connect(lsock.getsockname())
        peer, _ = lsock.accept()
        try:
            task = asyncio.ensure_future(conn.on_data(len))
            await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError, match="already waiting"):
                await conn.with_data(len)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the connection is still usable by a new reader
            peer.sendall(b"after")
            assert await conn.with_data(len) == 5
            conn.close()
            with pytest.raises(ringline.ConnectionClosed):
                conn.on_data(len)
        finally:
            peer.close()
            lsock.close()
    run(main())


def test_drain_waits_until_everything_queued_is_sent():
    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        _native.configure(asyncio.get_running_loop(), max_send_queue=256 << 20,
                          send_pool_limit=512 << 20)
        conn = await ringline.connect(lsock.getsockname())
        peer, _ = lsock.accept()
        try:
            assert (await conn.drain()) is None              # nothing queued: at once
            conn.send_nowait(b"x" * 100)
            await asyncio.wait_for(conn.drain(), 5)          # small: out soon
            # more than the socket buffers hold while the peer does not read
            big = b"y" * (32 << 20)
            conn.send_nowait(big)
            d = conn.drain()
            await asyncio.sleep(0.2)
            assert not d.done()
            got = 0
            peer.setblocking(False)
            while got < len(big) + 100 and not d.done():
                try:
                    got += len(peer.recv(1 << 20))
                except BlockingIOError:
                    pass
                await asyncio.sleep(0)
            assert (await asyncio.wait_for(d, 10)) is None
            assert conn.send_queue_bytes == 0
            # a drop fails a pending drain with the connection's error
            conn.send_nowait(big)
            d = conn.drain()
            await asyncio.sleep(0.05)
            conn.abort()
            with pytest.raises(ringline.ConnectionClosed):
                await asyncio.wait_for(d, 5)
            with pytest.raises(ringline.ConnectionClosed):
                conn.drain()
        finally:
            peer.close()
            lsock.close()
    run(main())
