"""ringline.momento against a fake Momento cache server (tests/support/
momento_fake.py: the momento-wire-types Scs servicer on grpcio's aio server,
a subprocess on 127.0.0.1): every command, the authorization and cache
metadata, TTLs, retries on UNAVAILABLE/INTERNAL (bounded, idempotent
commands only), the per-attempt deadline, batches, 1,000 concurrent gets
over a pool of channels, credentials parsed from Momento's key formats, and
docs/momento.md's example. The suite runs once per RINGLINE_BACKEND.
"""
import asyncio
import base64
import datetime
import json
import os
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("grpc")
pytest.importorskip("h2")
pytest.importorskip("momento_wire_types")

import ringline.grpc as rg  # noqa: E402
from ringline import momento  # noqa: E402
from support import run  # noqa: E402
from support.momento_fake import MomentoFake  # noqa: E402

KEY = "test-key"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


@pytest.fixture(scope="module")
def fake():
    f = MomentoFake(KEY)
    yield f
    f.close()


async def ctl(fake, name, arg=b""):
    """A control call to the fake (fake.Control/<name>)."""
    async with rg.Channel(fake.target) as ch:
        return await ch.unary_unary("/fake.Control/" + name)(arg, timeout=10)


def client(fake, key=KEY, default_ttl=60, **config):
    cred = momento.Credential.for_momento_local(port=fake.port, api_key=key)
    return momento.CacheClient(cred, momento.Configuration(**config), default_ttl)


async def calls(fake):
    return json.loads(await ctl(fake, "Calls"))


def test_scalar_commands(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake) as c:
            assert await c.get("cache", "k") is None
            await c.set("cache", "k", "v\u00e9")
            assert await c.get("cache", "k") == "v\u00e9".encode()
            assert await c.get("cache", b"k") == "v\u00e9".encode()   # str keys are UTF-8
            await c.set("cache", b"\x00bin", b"\xff\x00")
            assert await c.get("cache", b"\x00bin") == b"\xff\x00"
            await c.set("other", "k", "elsewhere")                    # caches are apart
            assert await c.get("cache", "k") == "v\u00e9".encode()
            assert await c.get("other", "k") == b"elsewhere"
            await c.delete("cache", "k")
            assert await c.get("cache", "k") is None
            await c.delete("cache", "never-there")                    # no error
            assert await c.increment("cache", "n") == 1
            assert await c.increment("cache", "n", 41) == 42
            assert await c.increment("cache", "n", -50) == -8
            assert await c.get("cache", "n") == b"-8"
            await c.set("cache", "s", "text")
            with pytest.raises(momento.FailedPreconditionError) as ei:
                await c.increment("cache", "s")
            assert ei.value.status is rg.StatusCode.FAILED_PRECONDITION
            assert ei.value.code is momento.ErrorCode.FAILED_PRECONDITION_ERROR
            big = os.urandom(1 << 20)
            await c.set("cache", "big", big)
            assert await c.get("cache", "big") == big
            with pytest.raises(momento.InvalidArgumentError):
                await c.set("cache", 12, "v")
    run(main)


def test_ttls(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake, default_ttl=datetime.timedelta(seconds=30)) as c:
            await c.set("cache", "default", "v")
            left = await c.item_get_ttl("cache", "default")
            assert 28 < left <= 30
            await c.set("cache", "long", "v", ttl=600)
            assert 590 < await c.item_get_ttl("cache", "long") <= 600
            await c.set("cache", "short", "v", ttl=0.2)
            await c.set("cache", "td", "v", ttl=datetime.timedelta(milliseconds=200))
            assert await c.get("cache", "short") == b"v"
            assert await c.increment("cache", "cnt", ttl=0.2) == 1
            await asyncio.sleep(0.4)
            assert await c.get("cache", "short") is None
            assert await c.get("cache", "td") is None
            assert await c.get("cache", "cnt") is None
            assert await c.item_get_ttl("cache", "short") is None
            assert await c.get("cache", "long") == b"v"
            for bad in (0, -1, datetime.timedelta(0), "5"):
                with pytest.raises(momento.InvalidArgumentError):
                    await c.set("cache", "k", "v", ttl=bad)
            with pytest.raises(ValueError):
                await c.set("cache", "k", "v", ttl=-1)
        with pytest.raises(ValueError):
            client(fake, default_ttl=0)
    run(main)


def test_batches(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake) as c:
            assert await c.get_batch("cache", []) == []
            await c.set_batch("cache", {})
            await c.set_batch("cache", {"a": "1", b"b": b"2"})
            await c.set_batch("cache", [("c", "3"), ("d", "4")], ttl=0.2)
            got = await c.get_batch("cache", ["a", "missing", "b", "c", "d"])
            assert got == [b"1", None, b"2", b"3", b"4"]
            await asyncio.sleep(0.4)
            assert await c.get_batch("cache", ["a", "c", "d"]) == [b"1", None, None]
            many = {f"k{i}": f"v{i}" for i in range(500)}
            await c.set_batch("cache", many)
            got = await c.get_batch("cache", list(many))
            assert got == [v.encode() for v in many.values()]
            n = await calls(fake)
            assert n["SetBatch"] == 3 and n["GetBatch"] == 3    # one RPC per batch
            # a reply with an item missing is an error, not a guess
            await ctl(fake, "Short", b"1")
            with pytest.raises(momento.MomentoError) as ei:
                await c.get_batch("cache", ["a", "b"])
            assert ei.value.code is momento.ErrorCode.UNKNOWN_ERROR and ei.value.status is None
            assert await c.get_batch("cache", ["a", "b"]) == [b"1", b"2"]
    run(main)


def test_dictionary_family(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake) as c:
            assert await c.dictionary_fetch("cache", "d") is None
            assert await c.dictionary_get_field("cache", "d", "f") is None
            assert await c.dictionary_get_fields("cache", "d", ["f", "g"]) == [None, None]
            await c.dictionary_set_field("cache", "d", "f", "1")
            await c.dictionary_set_fields("cache", "d", {"g": "2", b"h": b"3"})
            await c.dictionary_set_fields("cache", "d", [("i", "4")])
            assert await c.dictionary_get_field("cache", "d", "f") == b"1"
            assert await c.dictionary_get_fields("cache", "d", ["h", "zz", "g"]) == \
                [b"3", None, b"2"]
            assert await c.dictionary_fetch("cache", "d") == \
                {b"f": b"1", b"g": b"2", b"h": b"3", b"i": b"4"}
            assert await c.dictionary_increment("cache", "d", "n", 5) == 5
            assert await c.dictionary_increment("cache", "d", "n") == 6
            await c.dictionary_remove_field("cache", "d", "f")
            await c.dictionary_remove_fields("cache", "d", ["g", "absent"])
            assert await c.dictionary_fetch("cache", "d") == {b"h": b"3", b"i": b"4", b"n": b"6"}
            await c.dictionary_remove_fields("cache", "d", ["h", "i", "n"])
            assert await c.dictionary_fetch("cache", "d") is None
            await c.dictionary_set_fields("cache", "t", {"f": "v"}, ttl=0.2)
            await asyncio.sleep(0.4)
            assert await c.dictionary_fetch("cache", "t") is None
    run(main)


def test_auth_and_metadata(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake) as c:
            await c.set("cache", "k", "v")
            md = json.loads(await ctl(fake, "LastMetadata"))
            assert md["authorization"] == KEY and md["cache"] == "cache"
            assert md["agent"].startswith("python:ringline")        # the first call only
            assert md["runtime-version"].startswith("python 3.")
            await c.get("other", "k")
            md = json.loads(await ctl(fake, "LastMetadata"))
            assert md["cache"] == "other" and md["authorization"] == KEY
            assert "agent" not in md
        async with client(fake, key="wrong") as c:
            with pytest.raises(momento.AuthenticationError) as ei:
                await c.get("cache", "k")
            assert ei.value.status is rg.StatusCode.UNAUTHENTICATED
            assert ei.value.code is momento.ErrorCode.AUTHENTICATION_ERROR
            assert "Invalid signature" in str(ei.value)
        async with client(fake, key=KEY + "-readonly") as c:
            assert await c.get("cache", "k") == b"v"
            with pytest.raises(momento.PermissionDeniedError) as ei:
                await c.set("cache", "k", "w")
            assert ei.value.status is rg.StatusCode.PERMISSION_DENIED
        assert (await calls(fake))["Set"] == 2        # neither was retried
        async with client(fake) as c:
            with pytest.raises(momento.NotFoundError):
                await c.get("no-such-cache", "k")
            for bad in ("", "caf\u00e9", "a\nb", None):
                with pytest.raises(momento.InvalidArgumentError):
                    await c.get(bad, "k")
        assert (await calls(fake))["Get"] == 4          # the bad names never went out
    run(main)


def test_retries(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake, retry_backoff=0.001) as c:
            await c.set("cache", "k", "v")
            await ctl(fake, "FailNext", b"UNAVAILABLE 2")
            assert await c.get("cache", "k") == b"v"
            assert (await calls(fake))["Get"] == 3
            await ctl(fake, "FailNext", b"INTERNAL 3")
            await c.set("cache", "k", "w")                 # 3 failures, the 4th goes
            assert (await calls(fake))["Set"] == 5
            await ctl(fake, "FailNext", b"UNAVAILABLE 1")
            assert await c.get_batch("cache", ["k", "x"]) == [b"w", None]
            await ctl(fake, "FailNext", b"UNAVAILABLE 10")
            with pytest.raises(momento.ServerUnavailableError) as ei:
                await c.get("cache", "k")                   # bounded: 1 + 3 retries
            assert ei.value.status is rg.StatusCode.UNAVAILABLE
            assert (await calls(fake))["Get"] == 3 + 4
            await ctl(fake, "Reset")
            await ctl(fake, "FailNext", b"UNAVAILABLE 1")  # increment is not idempotent
            with pytest.raises(momento.ServerUnavailableError):
                await c.increment("cache", "n")
            await ctl(fake, "FailNext", b"UNAVAILABLE 1")
            with pytest.raises(momento.ServerUnavailableError):
                await c.dictionary_increment("cache", "d", "f")
            await ctl(fake, "FailNext", b"NOT_FOUND 1")    # not a retried status
            with pytest.raises(momento.NotFoundError):
                await c.get("cache", "k")
            n = await calls(fake)
            assert n["Increment"] == 1 and n["DictionaryIncrement"] == 1 and n["Get"] == 1
        async with client(fake, max_retries=0) as c:
            await ctl(fake, "FailNext", b"UNAVAILABLE 1")
            with pytest.raises(momento.ServerUnavailableError):
                await c.get("cache", "k")
            assert (await calls(fake))["Get"] == 2
        # a server that is not there: UNAVAILABLE, retried with backoff, bounded
        cred = momento.Credential.for_momento_local(port=1, api_key=KEY)
        cfg = momento.Configuration(retry_backoff=0.02, max_retries=2)
        async with momento.CacheClient(cred, cfg) as c:
            t = time.monotonic()
            with pytest.raises(momento.ServerUnavailableError):
                await c.get("cache", "k")
            assert 0.02 < time.monotonic() - t < 5
    run(main)


def test_deadline(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake, deadline=0.25) as c:
            await c.set("cache", "k", "v")
            await ctl(fake, "Delay", b"2")
            try:
                t = time.monotonic()
                with pytest.raises(momento.TimeoutError) as ei:
                    await c.get("cache", "k")
                took = time.monotonic() - t
            finally:
                await ctl(fake, "Delay", b"0")
            assert isinstance(ei.value, TimeoutError)      # builtins.TimeoutError too
            assert ei.value.status is rg.StatusCode.DEADLINE_EXCEEDED
            assert 0.2 < took < 1.5                        # not retried
            assert await c.get("cache", "k") == b"v"       # the client goes on
            # cancelling the awaiting task: asyncio.CancelledError, not a MomentoError
            await ctl(fake, "Delay", b"2")
            try:
                task = asyncio.ensure_future(c.get("cache", "k"))
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                await ctl(fake, "Delay", b"0")
            assert await c.get("cache", "k") == b"v"
        # a closed client fails at once, without retries
        t = time.monotonic()
        with pytest.raises(momento.ServerUnavailableError):
            await c.get("cache", "k")
        assert time.monotonic() - t < 0.5
        with pytest.raises(ValueError):
            momento.Configuration(deadline=0)
        assert momento.Configuration.in_region().deadline == 1.1
        assert momento.Configuration.low_latency().deadline == 0.5
        assert momento.Configuration.laptop().deadline == 15.0
    run(main)


def test_1000_concurrent_gets_on_few_channels(fake):
    async def main():
        await ctl(fake, "Reset")
        async with client(fake, channels=3) as c:
            await c.set_batch("bench", {f"k{i}": f"v{i}" for i in range(100)})
            got = await asyncio.gather(*[c.get("bench", f"k{i % 120}") for i in range(1000)])
            assert got == [f"v{i % 120}".encode() if i % 120 < 100 else None
                           for i in range(1000)]
            # round robin: every channel carried calls (each on its own
            # connection(s): a channel dials a second one only while the first
            # has no stream room, or while calls race its first dial)
            conns = [len(ch._pool.h2conns) for ch in c._t._channels]
            assert all(1 <= n <= 4 for n in conns), conns
        assert (await calls(fake))["Get"] == 1000
    run(main)


def _jwt(claims):
    seg = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return "eyJhbGciOiJIUzI1NiJ9." + seg + ".c2lnbmF0dXJl"


def test_credentials(monkeypatch):
    v1 = base64.b64encode(json.dumps({"api_key": "inner", "endpoint": "cell-1.example"})
                          .encode()).decode()
    c = momento.Credential.from_api_key(v1)
    assert (c.api_key, c.endpoint, c.port, c.tls) == ("inner", "cache.cell-1.example", 443, True)
    assert c.target == "cache.cell-1.example:443"
    legacy = _jwt({"sub": "me", "c": "cache.cell-2.example", "cp": "control.cell-2.example"})
    c = momento.Credential.from_api_key(legacy)
    assert (c.api_key, c.endpoint) == (legacy, "cache.cell-2.example")
    v2 = _jwt({"t": "g", "id": "x"})
    with pytest.raises(momento.InvalidArgumentError):
        momento.Credential.from_api_key(v2)             # names no endpoint
    c = momento.Credential.from_api_key_v2(v2, "cell-3.example")
    assert (c.api_key, c.endpoint) == (v2, "cache.cell-3.example")
    with pytest.raises(momento.InvalidArgumentError):
        momento.Credential.from_api_key_v2(legacy, "cell-3.example")
    for bad in ("", "not a key", _jwt({"sub": "no endpoint"}), "a.b.c"):
        with pytest.raises(momento.InvalidArgumentError):
            momento.Credential.from_api_key(bad)
    monkeypatch.setenv("MOMENTO_API_KEY", v2)
    monkeypatch.setenv("MOMENTO_ENDPOINT", "cell-4.example")
    c = momento.Credential.from_environment_variables_v2()
    assert c == momento.Credential(v2, "cache.cell-4.example")
    monkeypatch.setenv("MY_KEY", legacy)
    assert momento.Credential.from_environment_variable("MY_KEY").endpoint == \
        "cache.cell-2.example"
    monkeypatch.delenv("MOMENTO_ENDPOINT")
    with pytest.raises(momento.InvalidArgumentError):
        momento.Credential.from_environment_variables_v2()
    assert v2 not in repr(momento.Credential.from_api_key_v2(v2, "e"))
    local = momento.Credential.for_momento_local(port=9999)
    assert (local.target, local.tls) == ("127.0.0.1:9999", False)
    assert momento.Credential("k", "::1", 5).target == "[::1]:5"


def test_docs_example_runs(fake):
    """docs/momento.md's examples, each as pasted, against the fake."""
    with open(os.path.join(ROOT, "docs", "momento.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks
    env = dict(os.environ, MOMENTO_API_KEY=KEY, MOMENTO_LOCAL_PORT=str(fake.port))
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr
