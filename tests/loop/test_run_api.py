"""ringline's top-level entry points: run(), install(), EventLoopPolicy,
new_event_loop() and asyncio.Runner integration. ringline-only."""
import asyncio
import contextlib
import gc
import warnings

import pytest


def _ringline():
    import ringline

    return ringline


def _ringline_loop_type():
    lp = _ringline().new_event_loop()
    try:
        return type(lp)
    finally:
        lp.close()


@contextlib.contextmanager
def restore_policy():
    old = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(old)


def test_new_event_loop_returns_usable_loop():
    ringline = _ringline()
    loop = ringline.new_event_loop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert not isinstance(loop, asyncio.SelectorEventLoop)
        assert not loop.is_running() and not loop.is_closed()
        assert loop.run_until_complete(asyncio.sleep(0.001, "ok")) == "ok"
    finally:
        loop.close()
    assert loop.is_closed()
    other = ringline.new_event_loop()
    try:
        assert other is not loop
    finally:
        other.close()


def test_run_returns_result():
    ringline = _ringline()
    loop_type = _ringline_loop_type()

    async def main(x):
        await asyncio.sleep(0.001)
        return x + 1, type(asyncio.get_running_loop())

    value, running_type = ringline.run(main(41))
    assert value == 42
    assert running_type is loop_type


def test_run_propagates_exception():
    ringline = _ringline()

    class Boom(Exception):
        pass

    async def main():
        await asyncio.sleep(0)
        raise Boom("out of run")

    with pytest.raises(Boom, match="out of run"):
        ringline.run(main())


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug_flag(debug):
    ringline = _ringline()

    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ringline.run(main(), debug=debug) is debug


def test_run_closes_loop_and_cancels_leftovers():
    ringline = _ringline()
    seen = {}

    async def background():
        try:
            await asyncio.sleep(3)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    async def main():
        seen["loop"] = asyncio.get_running_loop()
        asyncio.create_task(background())
        await asyncio.sleep(0.01)

    ringline.run(main())
    assert seen["cancelled"] is True
    assert seen["loop"].is_closed()


def test_run_rejects_non_coroutine():
    ringline = _ringline()
    with pytest.raises((TypeError, ValueError)):
        ringline.run(42)


def test_run_inside_running_loop_raises():
    ringline = _ringline()

    async def inner():
        return 1

    async def outer():
        coro = inner()
        try:
            # like asyncio.run(): fail fast, before creating a loop
            with pytest.raises(RuntimeError,
                               match="cannot be called from a running "
                                     "event loop"):
                ringline.run(coro)
        finally:
            coro.close()
        return "ok"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ringline.run(outer()) == "ok"
        gc.collect()
    leaked = [str(w.message) for w in caught
              if issubclass(w.category, RuntimeWarning)]
    assert not leaked, leaked


def test_event_loop_policy_new_event_loop():
    ringline = _ringline()
    policy = ringline.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert type(loop) is _ringline_loop_type()
        assert loop.run_until_complete(asyncio.sleep(0, "policy")) == "policy"
    finally:
        loop.close()


def test_event_loop_policy_via_set_event_loop_policy():
    ringline = _ringline()
    with restore_policy():
        asyncio.set_event_loop_policy(ringline.EventLoopPolicy())
        loop = asyncio.new_event_loop()
        try:
            assert type(loop) is _ringline_loop_type()
        finally:
            loop.close()


def test_install_makes_asyncio_create_ringline_loops():
    ringline = _ringline()
    loop_type = _ringline_loop_type()
    with restore_policy():
        ringline.install()
        assert isinstance(asyncio.get_event_loop_policy(),
                          ringline.EventLoopPolicy)
        loop = asyncio.new_event_loop()
        try:
            assert type(loop) is loop_type
        finally:
            loop.close()

        async def main():
            return type(asyncio.get_running_loop())

        # asyncio.run() goes through the policy as well
        assert asyncio.run(main()) is loop_type
    # restored
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is not loop_type
    finally:
        loop.close()


def test_asyncio_runner_with_ringline_factory():
    ringline = _ringline()
    loop_type = _ringline_loop_type()

    async def main(x):
        await asyncio.sleep(0.001)
        return x, asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=ringline.new_event_loop) as runner:
        v1, l1 = runner.run(main(1))
        v2, l2 = runner.run(main(2))
        assert (v1, v2) == (1, 2)
        assert l1 is l2 and type(l1) is loop_type
    assert l1.is_closed()
