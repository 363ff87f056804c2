"""Event-loop API, signals: add_signal_handler / remove_signal_handler
(delivery while the loop blocks, replacement, invalid signals, thread and
closed-loop errors), as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py;
helpers shared with the other test_loop_api_*.py files are in
support/loop_api.py.
"""
import os
import signal
import threading
import time

import pytest

from support import run


# ---------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------

def _send_self(sig):
    """os.kill(self) -- but only if that cannot kill the test process."""
    handler = signal.getsignal(sig)
    blocked = sig in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if handler in (signal.SIG_DFL, None) and not blocked:
        pytest.fail(f"signal {sig} neither has a handler nor is blocked; "
                    "refusing to os.kill() the test process")
    os.kill(os.getpid(), sig)


def test_add_signal_handler_invokes_callback_with_args(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1,
                            lambda *a: got.done() or got.set_result(a),
                            "arg1", 2)
    try:
        loop.call_later(0.01, _send_self, signal.SIGUSR1)
        assert run(got, loop=loop) == ("arg1", 2)
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_signal_delivered_while_loop_blocked(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "sig")
    try:
        loop.call_later(2.0, lambda: got.done() or got.set_result("timer"))

        def sender():
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGUSR1)

        t = threading.Thread(target=sender)
        start = time.monotonic()
        # make sure the process can't be killed by the signal below
        assert (signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
                or signal.SIGUSR1 in signal.pthread_sigmask(
                    signal.SIG_BLOCK, [])), "SIGUSR1 not handled"
        t.start()
        try:
            assert run(got, loop=loop) == "sig"
        finally:
            t.join()
        assert time.monotonic() - start < 1.0
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_replaced(loop):
    calls = []
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, calls.append, "old")
    loop.add_signal_handler(signal.SIGUSR2,
                            lambda: (calls.append("new"), done.set_result(1)))
    try:
        loop.call_later(0.01, _send_self, signal.SIGUSR2)
        run(done, loop=loop)
        assert calls == ["new"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)


def test_remove_signal_handler_unregistered_returns_false(loop):
    assert loop.remove_signal_handler(signal.SIGUSR2) is False


def test_add_signal_handler_invalid_signal(loop):
    with pytest.raises(ValueError):
        loop.add_signal_handler(0, lambda: None)
    with pytest.raises(ValueError):
        loop.add_signal_handler(signal.NSIG + 1, lambda: None)
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGUSR1", lambda: None)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(signal.NSIG + 1)


def test_add_signal_handler_sigkill_raises(loop):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)
    assert loop.remove_signal_handler(signal.SIGKILL) is False


def test_add_signal_handler_rejects_coroutines(loop):
    async def coro_fn():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro_fn)
    coro = coro_fn()
    try:
        with pytest.raises(TypeError):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_from_non_main_thread_raises(loop):
    result = []

    def in_thread():
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except Exception as exc:  # noqa: BLE001 - recorded for the assert
            result.append(exc)
        else:
            result.append(None)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert isinstance(result[0], RuntimeError)


def test_add_signal_handler_after_close_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
