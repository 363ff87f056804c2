"""Hostile peers: fake Redis and memcached servers that send replies meant
to make the client grow without bound or hang (issue 12, findings 4-7).

Each fake server is a subprocess (an asyncio server on 127.0.0.1, a free
port) so that the client process's memory measures the client alone. Its
second connection (the first is a bystander) answers its first command with an endless hostile stream,
bounded by a per-scenario byte cap (well above what trips the client's
bound, so a client without that bound fails the test by hanging or by
growing, not by the cap) and by time; every later connection is well
behaved. Checks, on the backend the suite runs with (RINGLINE_BACKEND):

* the call ends, within a wait_for bound, with a ProtocolError naming the
  bound (or a connection error), never a hang;
* the client process's peak RSS (the kernel's VmHWM, reset before the
  call) grows by less than 80 MiB (64 MiB of reply budget + the 16 MiB
  receive accumulator; measured: at most 59 MiB) while the server streams
  up to 50 MB;
* another connection opened before keeps working, and the same Redis
  client works again (lazy reconnect).
"""
import asyncio
import sys
import textwrap

import pytest

import ringline
from ringline import memcache as mc
from ringline import redis as rr

from support import run
from support.portproc import port_processes
from support.rss import reset_peak_rss as _reset_peak_rss, status as _status

MIB = 1 << 20
# max_reply_bytes (64 MiB accounted, which over-estimates the objects) plus
# the receive accumulator's cap (16 MiB)
MEMORY_BOUND = 80 * MIB
CALL_BOUND = 30.0           # seconds a hostile call may take before it counts as a hang

_SERVER = textwrap.dedent(r'''
    import asyncio, itertools, sys, time
    from ringline.bench.portchild import serve_streams
    kind, mode, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def stream(mode):
        """(head, endless chunk generator) of the hostile reply."""
        if mode == "huge_count_sets":
            return b"*4294967296\r\n", itertools.repeat(b"~0\r\n" * 16384)
        if mode == "huge_list":
            return b"*1000000\r\n", itertools.repeat(b"$10\r\n0123456789\r\n" * 4096)
        if mode == "nested":
            return b"", itertools.repeat(b"*1\r\n" * 16384)
        if mode == "long_int":
            return b":" + b"9" * 5000 + b"\r\n", iter(())
        if mode == "no_crlf":
            return b"+", itertools.repeat(b"a" * 65536)
        if mode == "values_no_end":
            return b"", itertools.repeat(b"VALUE k 0 3\r\nabc\r\n" * 4096)
        if mode == "stats":
            return b"", (b"".join(b"STAT k%d 1\r\n" % (i * 4096 + j) for j in range(4096))
                         for i in itertools.count())
        if mode == "long_incr":
            return b"9" * 5000 + b"\r\n", iter(())
        if mode == "mc_no_crlf":
            return b"VERSION ", itertools.repeat(b"a" * 65536)
        raise SystemExit("unknown mode " + mode)

    def good_reply(data):
        if kind == "redis":
            n = data.count(b"\r\n*") + (1 if data.startswith(b"*") else 0)
            return b"+PONG\r\n" * n
        out = []
        for line in data.split(b"\r\n"):
            if line.startswith((b"get", b"gets", b"stats")):
                out.append(b"END\r\n")
            elif line.startswith(b"version"):
                out.append(b"VERSION 1.6.0\r\n")
            elif line.startswith((b"incr", b"decr")):
                out.append(b"1\r\n")
        return b"".join(out)

    connections = itertools.count()
    HOSTILE_INDEX = int(sys.argv[4])

    async def handle(reader, writer):
        hostile = next(connections) == HOSTILE_INDEX
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if not hostile:
                    writer.write(good_reply(data))
                    await writer.drain()
                    continue
                head, chunks = stream(mode)
                writer.write(head)
                sent, deadline = len(head), time.monotonic() + 60
                for chunk in chunks:
                    if sent >= cap or time.monotonic() > deadline:
                        break
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
                await writer.drain()
                hostile = False
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    asyncio.run(serve_streams(handle))
''')


@pytest.fixture
def fake():
    def argv(kind, mode, cap=50 * MIB, hostile_index=1):
        return [sys.executable, "-c", _SERVER, kind, mode, str(cap), str(hostile_index)]
    yield from port_processes(argv)


async def _measured(aw):
    """Await aw (bounded by CALL_BOUND); (exception, peak RSS growth). The
    peak is the kernel's own high-water mark, so nothing between samples is
    missed, and it counts everything the client holds (Python objects, the
    receive accumulator, hiredis), not only Python allocations."""
    base = _reset_peak_rss()
    task = asyncio.ensure_future(aw)
    await asyncio.wait([task], timeout=CALL_BOUND)
    if not task.done():
        task.cancel()
        pytest.fail(f"the call hung for {CALL_BOUND} s")
    return task.exception(), _status("VmHWM:") - base


# scenario: (mode, server byte cap, client options, what the error names)
REDIS_CASES = [
    ("huge_count_sets", 2_500_000, {}, "max_elements"),
    ("huge_count_sets", 2_500_000, {"max_elements": 1 << 32}, "max_reply_bytes"),
    ("huge_list", 50 * MIB, {}, "max_reply_bytes"),
    ("nested", 50 * MIB, {}, "max_depth"),
    ("long_int", 50 * MIB, {}, "integer of 5000 characters"),
    ("no_crlf", 50 * MIB, {}, "max_line"),
]


@pytest.mark.parametrize("parser", ["python", "auto"])
@pytest.mark.parametrize("mode,cap,options,names", REDIS_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in REDIS_CASES])
def test_hostile_redis_server(fake, mode, cap, options, names, parser):
    server = fake("redis", mode, cap)

    async def main():
        bystander = await rr.connect("127.0.0.1", server.port, parser=parser)
        c = await rr.connect("127.0.0.1", server.port, parser=parser, **options)
        # the server's second connection is the hostile one
        err, peak = await _measured(c.get("k"))
        assert isinstance(err, (rr.ProtocolError, ConnectionError, rr.RedisConnectionError)), \
            repr(err)
        if isinstance(err, rr.ProtocolError):
            assert names in str(err), str(err)
        assert peak < MEMORY_BOUND, f"client memory grew by {peak / MIB:.1f} MiB"
        assert await asyncio.wait_for(bystander.ping(), 10) is True
        assert await asyncio.wait_for(c.ping(), 10) is True      # redialed, works again
        await c.close()
        await bystander.close()
        return peak

    run(main())


MEMCACHE_CASES = [
    ("values_no_end", 15 * MIB, "get", "max_reply_bytes"),
    ("values_no_end", 15 * MIB, "get_many", "max_reply_bytes"),
    ("stats", 10 * MIB, "stats", "max_reply_bytes"),
    ("long_incr", 50 * MIB, "incr", "numeric reply of 5000 digits"),
    ("mc_no_crlf", 50 * MIB, "version", "max_line"),
]


@pytest.mark.parametrize("zero_copy", [False, True])
@pytest.mark.parametrize("mode,cap,command,names", MEMCACHE_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in MEMCACHE_CASES])
def test_hostile_memcached(fake, mode, cap, command, names, zero_copy):
    server = fake("memcache", mode, cap)

    async def main():
        bystander = await mc.connect("127.0.0.1", server.port)
        c = await mc.connect("127.0.0.1", server.port, zero_copy=zero_copy)
        call = {"get": lambda: c.get("k"), "get_many": lambda: c.get_many(["k", "j"]),
                "stats": c.stats, "incr": lambda: c.incr("k"),
                "version": c.version}[command]
        err, peak = await _measured(call())
        assert isinstance(err, (mc.ProtocolError, ConnectionError,
                                ringline.ConnectionClosed)), repr(err)
        if isinstance(err, mc.ProtocolError):
            assert names in str(err), str(err)
        assert peak < MEMORY_BOUND, f"client memory grew by {peak / MIB:.1f} MiB"
        assert c.closed
        assert await asyncio.wait_for(bystander.version(), 10) == "1.6.0"
        assert await asyncio.wait_for(bystander.get("k"), 10) is None
        await c.close()
        await bystander.close()

    run(main())


def test_the_memory_measure_sees_growth(fake):
    """The measure is not blind: a client whose bound is raised above what
    the server sends does hold it."""
    server = fake("memcache", "values_no_end", 8 * MIB, hostile_index=0)

    async def main():
        c = await mc.connect("127.0.0.1", server.port, reply_timeout=3,
                             max_reply_bytes=1 << 40)
        err, peak = await _measured(c.get("k"))
        assert isinstance(err, TimeoutError), repr(err)       # no END ever: the watchdog
        assert peak > 40 * MIB, peak / MIB
        await c.close()

    run(main())
