"""Parity with stock asyncio where ringline used to differ (issue 13's list).

Owns: one scenario per former deviation, each run on stock asyncio and on
ringline through the ``loop_factory`` fixture. Where the exact outcome
matters (an exception's type, errno and message, an order of callbacks),
the scenario is also run on a fresh stock asyncio loop inside the test and
the two results are compared, so asyncio itself defines the expectation.
Nothing here asserts a duration: "promptly" is checked as an order against
a much later timer.
"""
import asyncio
import contextvars
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref

import pytest

from support import run, tcp_pair

# A fallback far later than anything these scenarios wait for: it only
# decides the outcome when the behaviour under test is missing.
LATE = 3.0


def on_stock_asyncio(scenario):
    """Run scenario() (a coroutine function) on a fresh stock asyncio loop."""
    lp = asyncio.SelectorEventLoop()
    try:
        return lp.run_until_complete(asyncio.wait_for(scenario(), 10))
    finally:
        lp.close()


async def settle(n=10):
    for _ in range(n):
        await asyncio.sleep(0)


# ---- 1. signals during a blocking wait --------------------------------------

def test_signal_handler_runs_during_blocking_wait(loop):
    """A signal.signal() handler runs while the loop is blocked (with a
    submission in the very wait the signal interrupts), not when a much
    later timer ends the wait."""
    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        first = lp.create_future()

        def resolve(value):
            if not first.done():
                first.set_result(value)

        def on_alarm(signum, frame):
            lp.call_soon_threadsafe(resolve, "signal")

        old = signal.signal(signal.SIGALRM, on_alarm)
        # a C-level callback: running it executes no Python bytecode, so a
        # handler the loop failed to run is not run by it either
        late = lp.call_later(LATE, first.set_result, "timer")
        # keeps a submission in the blocking wait the signal interrupts
        rtask = lp.create_task(lp.sock_recv(a, 1))
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return await first
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            late.cancel()
            rtask.cancel()
            await asyncio.gather(rtask, return_exceptions=True)
            a.close()
            b.close()

    assert run(main(), timeout=10, loop=loop) == "signal"


def test_ctrl_c_interrupts_pending_sock_recv_under_runner(loop_factory):
    """SIGINT under asyncio.Runner while a sock_recv waits: the main task is
    interrupted (KeyboardInterrupt) before anything else wakes the loop."""
    got = []

    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        # the fallback that ends the wait if SIGINT is not handled: C-level
        lp.call_later(LATE, b.send, b"x")
        main_ident = threading.main_thread().ident
        threading.Timer(0.1, signal.pthread_kill, (main_ident, signal.SIGINT)).start()
        try:
            got.append(await lp.sock_recv(a, 1))
        finally:
            a.close()
            b.close()

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        with pytest.raises(KeyboardInterrupt):
            runner.run(main())
    assert got == []


# ---- 2. a sock_recv after a cancelled one -----------------------------------

def test_sock_recv_after_cancelled_recv_gets_the_data(loop):
    """Data that reaches a cancelled receive goes to the receive that
    follows it, even when that one is already waiting; nothing is lost and
    the order is kept."""
    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            t1 = lp.create_task(lp.sock_recv(a, 1))
            await settle()
            t1.cancel()
            t2 = lp.create_task(lp.sock_recv(a, 1))
            await asyncio.sleep(0)
            b.send(b"xyz")
            first = await asyncio.wait_for(t2, 3)
            rest = b""
            while len(first + rest) < 3:
                rest += await asyncio.wait_for(lp.sock_recv(a, 10), 3)
            return t1.cancelled(), first, rest
        finally:
            a.close()
            b.close()

    assert run(main(), loop=loop) == (True, b"x", b"yz")


def test_sock_recv_waiting_before_cancel_lands_gets_the_data(loop):
    """The same with the second receive already waiting when the data
    arrives, and the first one's cancellation not yet handed to the kernel."""
    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            t1 = lp.create_task(lp.sock_recv(a, 1))
            await settle()
            t1.cancel()
            lp.call_soon(b.send, b"xy")     # after t1 has seen its cancellation
            second = await asyncio.wait_for(lp.sock_recv(a, 1), 3)
            third = await asyncio.wait_for(lp.sock_recv(a, 1), 3)
            return t1.cancelled(), second, third
        finally:
            a.close()
            b.close()

    assert run(main(), loop=loop) == (True, b"x", b"y")


def _one_iteration(lp):
    lp.call_soon(lp.stop)
    lp.run_forever()


def test_cancelled_recv_data_reaches_the_waiting_recv_synthetic():
    """White-box, ringline only (the race needs the kernel to complete a
    receive after its task was cancelled and after the next receive was
    submitted; a synthetic completion makes it deterministic): the bytes go
    to the receive that is waiting, and later bytes follow them."""
    import ringline

    lp = ringline.new_event_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        b.send(b"Z")
        # leaves a 1-byte receive buffer holding b"Z" in the loop's cache,
        # which the next 1-byte receive reuses: the synthetic completion
        # below then "receives" b"Z"
        assert lp.run_until_complete(lp.sock_recv(a, 1)) == b"Z"
        before = set(lp._inflight_user_data())
        t1 = lp.create_task(lp.sock_recv(a, 1))
        _one_iteration(lp)
        (ud1,) = set(lp._inflight_user_data()) - before
        t1.cancel()
        t2 = lp.create_task(lp.sock_recv(a, 1))
        _one_iteration(lp)          # t1 handles its cancellation, t2 waits
        assert t1.cancelled() and not t2.done()
        lp._inject_cqe(ud1, 1)      # t1's receive completed after all
        b.send(b"Q")
        first = lp.run_until_complete(asyncio.wait_for(t2, 3))
        second = lp.run_until_complete(asyncio.wait_for(lp.sock_recv(a, 1), 3))
        assert (first, second) == (b"Z", b"Q")
    finally:
        a.close()
        b.close()
        lp.close()


# ---- 3. remove_reader/remove_writer with a closed socket object -------------

def test_remove_reader_writer_with_closed_socket_object(loop):
    """The registration is found by the object once its fd is gone."""
    async def main():
        lp = asyncio.get_running_loop()
        r, r_peer = socket.socketpair()
        w, w_peer = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        lp.add_reader(r, lambda: None)
        lp.add_writer(w, lambda: None)
        r.close()
        w.close()
        try:
            removed = lp.remove_reader(r), lp.remove_writer(w)
            # no longer registered and no fd: nothing to find it by
            with pytest.raises(ValueError):
                lp.remove_reader(r)
            with pytest.raises(ValueError):
                lp.remove_writer(w)
            return removed
        finally:
            r_peer.close()
            w_peer.close()

    assert run(main(), loop=loop) == (True, True)


# ---- 4. repr() of every transport kind in every state -----------------------

class _Recorder(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class _DgramRecorder(asyncio.DatagramProtocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def test_repr_of_transports_in_every_state(loop):
    async def main():
        lp = asyncio.get_running_loop()
        reprs = []

        async def exercise(transport, protocol):
            reprs.append(repr(transport))              # open
            transport.close()
            reprs.append(repr(transport))              # closing
            await asyncio.wait_for(protocol.lost, 3)
            reprs.append(repr(transport))              # closed

        a, b = socket.socketpair()
        tr, pr = await lp.create_connection(_Recorder, sock=a)
        await exercise(tr, pr)
        b.close()

        ours, peer = tcp_pair()
        tr, pr = await lp.create_connection(_Recorder, sock=ours)
        await exercise(tr, pr)
        peer.close()

        tr, pr = await lp.create_datagram_endpoint(_DgramRecorder,
                                                   local_addr=("127.0.0.1", 0))
        await exercise(tr, pr)

        rfd, wfd = os.pipe()
        wpipe = open(wfd, "wb", buffering=0)
        rpipe = open(rfd, "rb", buffering=0)
        tr, pr = await lp.connect_write_pipe(_Recorder, wpipe)
        await exercise(tr, pr)
        tr, pr = await lp.connect_read_pipe(_Recorder, rpipe)
        await exercise(tr, pr)
        return [r.startswith("<") and r.endswith(">") for r in reprs]

    assert run(main(), loop=loop) == [True] * 15


class _ExitWatcher(asyncio.SubprocessProtocol):
    def __init__(self):
        self.exited = asyncio.get_running_loop().create_future()

    def process_exited(self):
        self.exited.set_result(None)


def test_subprocess_close_kills_child_after_stdin_closed(loop):
    """BaseSubprocessTransport.close() (debug mode logs the transport's
    repr, which includes its pipes') kills a running child after its stdin
    pipe transport was closed."""
    loop.set_debug(True)

    async def main():
        lp = asyncio.get_running_loop()
        tr, pr = await lp.subprocess_exec(
            _ExitWatcher, sys.executable, "-c", "import time; time.sleep(30)",
            stdin=subprocess.PIPE, stdout=None, stderr=None)
        stdin = tr.get_pipe_transport(0)
        stdin.close()
        await settle(20)
        text = repr(tr)
        tr.close()
        await asyncio.wait_for(pr.exited, 5)
        return "stdin=" in text, tr.get_returncode()

    assert run(main(), timeout=10, loop=loop) == (True, -signal.SIGKILL)


# ---- 5. sock_sendall tries the send at call time ----------------------------

def test_sock_sendall_sends_before_a_following_close(loop):
    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            t = lp.create_task(lp.sock_sendall(a, b"hello"))
            lp.call_soon(a.close)
            await t
            b.settimeout(3)
            return b.recv(100)
        finally:
            a.close()
            b.close()

    assert run(main(), loop=loop) == b"hello"


# ---- 6. UDP sendto does what socket.sendto does with the address -----------

def test_udp_sendto_broadcast_name_goes_to_error_received(loop):
    async def scenario():
        lp = asyncio.get_running_loop()
        errors = []

        class P(asyncio.DatagramProtocol):
            def error_received(self, exc):
                errors.append(exc)

        tr, _ = await lp.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
        try:
            tr.sendto(b"x", ("<broadcast>", 9))    # SO_BROADCAST is off
            for _ in range(50):
                if errors:
                    break
                await asyncio.sleep(0.01)
        finally:
            tr.close()
        return [(type(e), e.errno) for e in errors]

    expected = on_stock_asyncio(scenario)
    assert expected and expected[0][0] is PermissionError
    assert run(scenario(), loop=loop) == expected


def test_udp_sendto_unresolvable_host_goes_to_error_received(loop):
    async def scenario():
        lp = asyncio.get_running_loop()
        errors = []

        class P(asyncio.DatagramProtocol):
            def error_received(self, exc):
                errors.append(exc)

        tr, _ = await lp.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
        try:
            tr.sendto(b"x", ("no such host.invalid", 9))
            for _ in range(50):
                if errors:
                    break
                await asyncio.sleep(0.01)
        finally:
            tr.close()
        return [isinstance(e, OSError) for e in errors]

    assert run(scenario(), loop=loop) == [True]


# ---- 7. data written just before abort() ------------------------------------

def test_write_then_abort_in_one_callback_delivers_the_data(loop):
    async def main():
        lp = asyncio.get_running_loop()
        a, b = socket.socketpair()

        class ReplyAndAbort(_Recorder):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(b"reply to " + data)
                self.transport.abort()

        tr, pr = await lp.create_connection(ReplyAndAbort, sock=a)
        b.send(b"ping")
        await asyncio.wait_for(pr.lost, 3)
        b.settimeout(3)
        got = b""
        while True:
            chunk = b.recv(100)
            if not chunk:
                break
            got += chunk
        b.close()
        return got

    assert run(main(), loop=loop) == b"reply to ping"


# ---- 8. failed AF_UNIX connects carry the OS's message ----------------------

def _unix_connect_failures(use_transport):
    async def scenario():
        lp = asyncio.get_running_loop()
        out = []
        with tempfile.TemporaryDirectory() as d:
            missing = os.path.join(d, "missing.sock")
            refusing = os.path.join(d, "refusing.sock")
            bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            bound.bind(refusing)            # bound, never listening
            try:
                for path in (missing, refusing):
                    try:
                        if use_transport:
                            await lp.create_unix_connection(asyncio.Protocol, path)
                        else:
                            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                            s.setblocking(False)
                            try:
                                await lp.sock_connect(s, path)
                            finally:
                                s.close()
                    except OSError as exc:
                        out.append((type(exc), exc.errno, exc.strerror,
                                    str(exc).replace(d, "<dir>")))
            finally:
                bound.close()
        return out
    return scenario


@pytest.mark.parametrize("use_transport", [False, True], ids=["sock_connect", "transport"])
def test_unix_connect_failure_matches_asyncio(loop, use_transport):
    scenario = _unix_connect_failures(use_transport)
    expected = on_stock_asyncio(scenario)
    assert [e[0] for e in expected] == [FileNotFoundError, ConnectionRefusedError]
    assert run(scenario(), loop=loop) == expected


# ---- 9. ready callbacks before the next poll's I/O callbacks ----------------

def test_ready_callbacks_run_before_data_received(loop):
    async def scenario():
        lp = asyncio.get_running_loop()
        order = []
        a, b = socket.socketpair()

        class P(asyncio.Protocol):
            def data_received(self, data):
                order.append("data")

        tr, _ = await lp.create_connection(P, sock=a)
        await settle()
        b.send(b"x")
        lp.call_soon(order.append, "soon")
        for _ in range(100):
            if "data" in order:
                break
            await asyncio.sleep(0.01)
        tr.close()
        b.close()
        await settle()
        return order

    expected = on_stock_asyncio(scenario)
    assert expected == ["soon", "data"]
    assert run(scenario(), loop=loop) == expected


def test_ready_callbacks_run_before_datagram_received(loop):
    async def scenario():
        lp = asyncio.get_running_loop()
        order = []

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                order.append("data")

        tr, _ = await lp.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await settle()
        peer.sendto(b"x", tr.get_extra_info("sockname"))
        lp.call_soon(order.append, "soon")
        for _ in range(100):
            if "data" in order:
                break
            await asyncio.sleep(0.01)
        tr.close()
        peer.close()
        await settle()
        return order

    expected = on_stock_asyncio(scenario)
    assert expected == ["soon", "data"]
    assert run(scenario(), loop=loop) == expected


def test_ready_callbacks_run_before_reader_callbacks(loop):
    async def scenario():
        lp = asyncio.get_running_loop()
        order = []
        a, b = socket.socketpair()
        a.setblocking(False)

        def on_readable():
            order.append("reader")
            lp.remove_reader(a)

        lp.add_reader(a, on_readable)
        await settle()
        b.send(b"x")
        lp.call_soon(order.append, "soon")
        for _ in range(100):
            if "reader" in order:
                break
            await asyncio.sleep(0.01)
        a.close()
        b.close()
        return order

    expected = on_stock_asyncio(scenario)
    assert expected == ["soon", "reader"]
    assert run(scenario(), loop=loop) == expected


# ---- 10. contexts, connection_made errors, handles, pipes, close ------------

_where = contextvars.ContextVar("where", default="base")


def test_datagram_callbacks_run_in_the_endpoint_context(loop):
    async def main():
        lp = asyncio.get_running_loop()
        seen = []

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                seen.append(("datagram", _where.get()))

            def error_received(self, exc):
                seen.append(("error", _where.get()))

        async def make():
            _where.set("endpoint")
            return await lp.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))

        tr, _ = await lp.create_task(make())
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.sendto(b"x", tr.get_extra_info("sockname"))
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        tr.close()
        peer.close()
        await settle()
        return seen

    assert run(main(), loop=loop) == [("datagram", "endpoint")]


def test_connection_made_error_is_logged_and_transport_kept(loop):
    async def scenario():
        lp = asyncio.get_running_loop()
        reported = []
        lp.set_exception_handler(lambda l, ctx: reported.append(ctx.get("exception")))
        a, b = socket.socketpair()
        received = []

        class P(asyncio.Protocol):
            def connection_made(self, transport):
                raise ZeroDivisionError("in connection_made")

            def data_received(self, data):
                received.append(data)

        tr, _ = await lp.create_connection(P, sock=a)
        b.send(b"still open")
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        closing = tr.is_closing()
        tr.close()
        b.close()
        await settle()
        return [type(e) for e in reported], closing, received

    expected = on_stock_asyncio(scenario)
    assert expected == ([ZeroDivisionError], False, [b"still open"])
    assert run(scenario(), loop=loop) == expected


def test_handle_is_weak_referenceable(loop):
    async def main():
        lp = asyncio.get_running_loop()
        h = lp.call_soon(lambda: None)
        t = lp.call_later(10, lambda: None)
        refs = weakref.ref(h), weakref.ref(t)
        t.cancel()
        return [r() is not None for r in refs]

    assert run(main(), loop=loop) == [True, True]


def test_debug_source_traceback_ends_at_the_caller(loop):
    loop.set_debug(True)

    async def main():
        lp = asyncio.get_running_loop()
        handles = []
        here = sys._getframe().f_code.co_name
        line = sys._getframe().f_lineno
        handles.append((line + 1, lp.call_soon(lambda: None)))
        handles.append((line + 2, lp.call_later(10, lambda: None)))
        handles.append((line + 3, lp.call_at(lp.time() + 10, lambda: None)))
        handles.append((line + 4, lp.call_soon_threadsafe(lambda: None)))
        out = []
        for lineno, h in handles:
            out.append(tuple(h._source_traceback[-1][:3]) == (__file__, lineno, here))
            h.cancel()
        return out

    assert run(main(), loop=loop) == [True] * 4


def test_write_pipe_has_no_reading_side(loop):
    async def main():
        lp = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        wpipe = open(wfd, "wb", buffering=0)
        tr, pr = await lp.connect_write_pipe(_Recorder, wpipe)
        out = []
        for name in ("pause_reading", "resume_reading", "is_reading"):
            try:
                getattr(tr, name)()
                out.append(None)
            except NotImplementedError:
                out.append(NotImplementedError)
        tr.close()
        await asyncio.wait_for(pr.lost, 3)
        os.close(rfd)
        return out

    assert run(main(), loop=loop) == [NotImplementedError] * 3


def test_close_with_sock_recv_in_flight_reports_nothing(loop_factory):
    lp = loop_factory()
    reported = []
    lp.set_exception_handler(
        lambda l, ctx: reported.append(f"{ctx.get('message')}: {ctx.get('exception')!r}"))
    a, b = socket.socketpair()
    a.setblocking(False)
    task = lp.create_task(lp.sock_recv(a, 1))
    for _ in range(5):
        lp.run_until_complete(asyncio.sleep(0))
    lp.close()
    gc.collect()
    a.close()
    b.close()
    assert not task.done()
    assert [m for m in reported if "closed" in m] == []


# ---- 11. which timers are due is decided after the wait ---------------------

def test_timer_scheduled_by_a_callback_runs_after_earlier_call_soon(loop):
    """A timer that a callback schedules, and that falls due while the
    callbacks of that iteration still run, runs after the call_soon()
    handles scheduled before it (asyncio moves due timers to its ready queue
    once per iteration). CPython's test_wait_for_reraises_exception_during_
    cancellation depends on it: the inner task must start before wait_for's
    timeout fires."""
    async def scenario():
        lp = asyncio.get_running_loop()
        order = []
        done = lp.create_future()

        def first():
            lp.call_soon(order.append, "soon")
            lp.call_later(0.0001, order.append, "timer")
            lp.call_at(lp.time() - 1, order.append, "past")
            t_end = lp.time() + 0.005
            while lp.time() < t_end:       # both timers fall due meanwhile
                pass

        lp.call_soon(first)
        lp.call_later(0.05, done.set_result, None)
        await done
        return order

    expected = on_stock_asyncio(scenario)
    assert expected == ["soon", "past", "timer"]
    assert run(scenario(), loop=loop) == expected


def test_wait_for_inner_task_starts_before_a_tiny_timeout(loop):
    """The CPython 3.13 test that found the ordering above, made
    deterministic: the timeout is already due when the caller yields."""
    class Foo(Exception):
        pass

    async def scenario():
        async def inner():
            try:
                await asyncio.sleep(0.2)
            finally:
                raise Foo

        task = asyncio.create_task(inner())
        t_end = time.monotonic() + 0.005
        while time.monotonic() < t_end:
            pass
        try:
            await asyncio.wait_for(_burn_then(task), timeout=0.0001)
        except BaseException as exc:
            return type(exc).__name__
        return "no exception"

    expected = on_stock_asyncio(scenario)
    assert expected == "Foo"
    assert run(scenario(), loop=loop) == expected


async def _burn_then(task):
    t_end = time.monotonic() + 0.005       # the timeout falls due meanwhile
    while time.monotonic() < t_end:
        pass
    return await task
