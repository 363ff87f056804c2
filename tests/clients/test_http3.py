"""ringline.http3 (and ringline.quic under it) against independent HTTP/3
servers on loopback: Debian's ngtcp2 example server (GnuTLS + nghttp3),
hypercorn with --quic-bind (aioquic), and ringline.http3's own server in a
subprocess. Each server is started once per module with trustme
certificates; each test runs on the backend the suite runs with
(RINGLINE_BACKEND).

Covers bodies of 0 B .. 16 MiB (sha256-checked), uploads, 100 concurrent
streams on one connection with the datagrams per send batch and per
io_uring_enter reported, server GOAWAY, a stream reset by the server, a bad
certificate (a clear ConnectError), the idle timeout, packet loss and
reordering through a lossy relay (5 % dropped each way) with every byte
intact, the receive bound (a slow reader pauses the connection) and the
aioquic engine.
"""
import asyncio
import hashlib

import pytest

import ringline
import ringline.http3 as h3
from ringline.http3._server import pattern

from support import run
from support.h3_servers import (SIZES, HypercornQuic, LossyRelay, Ngtcp2, OurServer,
                                have_hypercorn_quic, have_ngtcp2)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ngtcp2():
    if not have_ngtcp2():
        pytest.skip("ngtcp2-server is not installed (scripts/setup-system.sh installs it)")
    srv = Ngtcp2().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def hypercorn():
    if not have_hypercorn_quic():
        pytest.skip("hypercorn and aioquic are needed")
    srv = HypercornQuic().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ours():
    srv = OurServer().start()
    yield srv
    srv.stop()


def _client(srv, port=None, **kw):
    kw.setdefault("timeout", 10)
    return h3.Client(base_url=f"https://127.0.0.1:{port or srv.port}", verify=srv.tls["ca"], **kw)


def test_ngtcp2_sizes(ngtcp2):
    async def main():
        async with _client(ngtcp2) as c:
            for n in SIZES:
                r = await c.get(ngtcp2.path(n))
                assert r.status_code == 200 and r.http_version == "HTTP/3"
                assert len(r.content) == n
                assert hashlib.sha256(r.content).hexdigest() == ngtcp2.digests[n]
            assert len(c._all) == 1           # one connection for all of them
    run(main())


def test_ngtcp2_streaming_and_100_streams(ngtcp2):
    async def main():
        async with _client(ngtcp2) as c:
            async with c.stream("GET", f"/f{1 << 20}") as r:
                h = hashlib.sha256()
                async for chunk in r.aiter_bytes():
                    h.update(chunk)
            assert h.hexdigest() == ngtcp2.digests[1 << 20]
            rs = await asyncio.gather(*[c.get(ngtcp2.path(SIZES[i % 4])) for i in range(100)])
            for i, r in enumerate(rs):
                assert hashlib.sha256(r.content).hexdigest() == ngtcp2.digests[SIZES[i % 4]]
    run(main())


def test_hypercorn_sizes_and_upload(hypercorn):
    async def main():
        async with _client(hypercorn) as c:
            for n in (0, 1, 100_000, 4 << 20):
                r = await c.get(f"/bytes/{n}")
                assert r.status_code == 200 and r.content == (b"0123456789" * (n // 10 + 1))[:n]
            body = bytes(range(256)) * 4000
            r = await c.post("/echo", content=body)
            assert r.json()["length"] == len(body)
            assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()

            async def pieces():
                for _ in range(10):
                    yield b"y" * 10_000
            r = await c.post("/echo", content=pieces())
            assert r.json()["length"] == 100_000
            rs = await asyncio.gather(*[c.get(f"/bytes/{i}") for i in range(100)])
            assert [len(r.content) for r in rs] == list(range(100))
    run(main())


def test_ours_16mib_and_echo(ours):
    async def main():
        async with _client(ours) as c:
            r = await c.get(f"/bytes/{16 << 20}")
            assert r.content == pattern(16 << 20)
            r = await c.post("/echo", content=b"z" * 3_000_000)
            assert r.content == b"z" * 3_000_000
    run(main())


def test_100_streams_batching(ours):
    """The datagrams of the requests made in one loop turn leave in one
    send batch (one SENDMSG each, one io_uring_enter for all of them)."""
    async def main():
        loop = asyncio.get_running_loop()
        async with _client(ours) as c:
            await c.get("/hello")                 # handshake done, SETTINGS exchanged
            ep = next(iter(c._all)).qc.endpoint
            before = dict(ep.stats())
            ring0 = loop._ring_stats()
            rs = await asyncio.gather(*[c.get(f"/bytes/{1000 + i}") for i in range(100)])
            ring1 = loop._ring_stats()
            assert [len(r.content) for r in rs] == [1000 + i for i in range(100)]
            after = ep.stats()
            out = after["datagrams_out"] - before["datagrams_out"]
            batches = after["send_batches"] - before["send_batches"]
            enters = ring1["enters"] - ring0["enters"]
            sends = ring1["ops"].get(9, 0) - ring0["ops"].get(9, 0)     # IORING_OP_SENDMSG
            sqes = ring1["submitted"] - ring0["submitted"]
            print(f"\n100 streams: {out} datagrams out in {batches} send batches "
                  f"(max {after['max_batch']}), {out / max(batches, 1):.1f} per batch; "
                  f"{sends} SENDMSG and {sqes} SQEs in all over {enters} io_uring_enter "
                  f"({sqes / max(enters, 1):.2f} SQEs per enter, {ring1['backend']}); "
                  f"{after['datagrams_in'] - before['datagrams_in']} datagrams in over "
                  f"{after['turns'] - before['turns']} turns")
            assert after["max_batch"] >= 5         # the 100 HEADERS went out together
            assert out > batches                   # some batches carried several
    run(main())


def test_goaway(ours):
    async def main():
        async with _client(ours) as c:
            await c.get("/hello")
            first = next(iter(c._all))
            r = await c.get("/goaway")
            assert r.text == "hello"
            for _ in range(100):
                if first.going_away or first.closed:
                    break
                await asyncio.sleep(0.01)
            assert first.going_away or first.closed
            r = await c.get("/hello")              # on a new connection
            assert r.status_code == 200
            assert c._conns[r.url.origin] is not first
            assert first.closed
    run(main())


def test_stream_reset(ours):
    async def main():
        async with _client(ours) as c:
            with pytest.raises(h3.RemoteProtocolError, match="reset"):
                await c.get("/reset")
            assert (await c.get("/hello")).status_code == 200   # the connection goes on
            assert len(c._all) == 1
    run(main())


def test_bad_certificate(ours):
    async def main():
        # the system CAs do not know the test CA
        async with h3.Client(base_url=f"https://127.0.0.1:{ours.port}", timeout=5) as c:
            with pytest.raises(h3.ConnectError, match="certificate") as info:
                await c.get("/hello")
            print("\n", info.value)
        async with h3.Client(base_url=f"https://127.0.0.1:{ours.port}", verify=False) as c:
            assert (await c.get("/hello")).status_code == 200
    run(main())


def test_idle_timeout(ours):
    async def main():
        async with _client(ours, quic=h3.QuicLimits(idle_timeout=0.5)) as c:
            await c.get("/hello")
            first = next(iter(c._all))
            await asyncio.wait_for(first.qc.closed, 5)
            assert first.closed
            r = await c.get("/hello")
            assert r.status_code == 200 and next(iter(c._all)) is not first
    run(main())


def test_read_timeout(ours):
    async def main():
        async with _client(ours, timeout=h3.Timeout(5, read=0.3)) as c:
            with pytest.raises(h3.ReadTimeout):
                await c.get("/sleep/2")
            assert (await c.get("/hello")).status_code == 200
    run(main())


@pytest.mark.parametrize("server", ["ngtcp2", "ours"])
def test_lossy_relay(server, request):
    srv = request.getfixturevalue(server)
    relay = LossyRelay(srv.port, drop=0.05, reorder=10).start()
    try:
        async def main():
            async with _client(srv, port=relay.port, timeout=30) as c:
                if server == "ngtcp2":
                    r = await c.get(f"/f{1 << 20}")
                    assert hashlib.sha256(r.content).hexdigest() == srv.digests[1 << 20]
                    rs = await asyncio.gather(*[c.get(srv.path(SIZES[i % 4]))
                                                for i in range(30)])
                    for i, r in enumerate(rs):
                        assert hashlib.sha256(r.content).hexdigest() == \
                            srv.digests[SIZES[i % 4]]
                else:
                    r = await c.get(f"/bytes/{2 << 20}")
                    assert r.content == pattern(2 << 20)
                    r = await c.post("/echo", content=pattern(500_000))
                    assert r.content == pattern(500_000)
        run(main(), timeout=90)
    finally:
        relay.stop()
    print(f"\nrelay: {relay.relayed} relayed, {relay.dropped} dropped, "
          f"{relay.reordered} reordered")
    assert relay.dropped > 0 and relay.reordered > 0


def test_receive_bound_pauses(ours):
    """A slow reader: unread body bytes stay under max_buffered_bytes plus
    about one connection window; the connection pauses, then resumes."""
    async def main():
        limits = h3.QuicLimits(max_buffered_bytes=256 << 10, max_data=1 << 20,
                               max_stream_data=512 << 10)
        async with _client(ours, quic=limits) as c:
            async with c.stream("GET", f"/bytes/{4 << 20}") as r:
                conn = next(iter(c._all))
                peak = paused = 0
                done = False

                async def sample():
                    nonlocal peak, paused
                    while not done:
                        peak = max(peak, conn.buffered)
                        paused += conn.qc.paused
                        await asyncio.sleep(0.001)
                sampler = asyncio.ensure_future(sample())
                total = bytearray()
                async for chunk in r.aiter_raw():
                    total += chunk
                    await asyncio.sleep(0.02)
                done = True
                await sampler
                assert bytes(total) == pattern(4 << 20)
            print(f"\npeak unread {peak} bytes, paused in {paused} samples")
            assert paused > 0
            assert peak <= (256 << 10) + (1 << 20) + 65536
    run(main())


def test_aioquic_engine(ngtcp2):
    async def main():
        async with _client(ngtcp2, quic=h3.QuicLimits(engine="aioquic")) as c:
            assert next(iter([c])).quic.engine == "aioquic"
            r = await c.get(f"/f{1 << 20}")
            assert hashlib.sha256(r.content).hexdigest() == ngtcp2.digests[1 << 20]
            rs = await asyncio.gather(*[c.get(ngtcp2.path(SIZES[i % 3])) for i in range(50)])
            assert all(len(r.content) == SIZES[i % 3] for i, r in enumerate(rs))
            assert next(iter(c._all)).qc.engine.name == "aioquic"
    run(main())


def test_http_url_refused():
    async def main():
        async with h3.Client() as c:
            with pytest.raises(h3.HTTPError, match="https"):
                await c.get("http://127.0.0.1:1/")
    run(main())


def test_in_process_server_goaway_and_early_close(tmp_path):
    """Server and client on one loop; a streamed response closed early
    cancels its stream only; the server's GOAWAY moves the next request to
    a new connection."""
    from support.h3_servers import tls_files
    tls = tls_files(str(tmp_path))

    async def main():
        srv = await h3.serve("127.0.0.1", 0, certfile=tls["cert"], keyfile=tls["key"])
        try:
            async with h3.Client(base_url=f"https://127.0.0.1:{srv.port}", verify=tls["ca"],
                                 timeout=10) as c:
                async with c.stream("GET", f"/bytes/{8 << 20}") as r:
                    async for chunk in r.aiter_raw():
                        break                        # leave with most of it unread
                first = next(iter(c._all))
                assert not first.streams and first.buffered == 0
                assert (await c.get("/hello")).text == "hello"
                assert next(iter(c._all)) is first
                srv.goaway()
                for _ in range(200):
                    if first.going_away or first.closed:
                        break
                    await asyncio.sleep(0.01)
                assert first.going_away or first.closed
                r = await c.get("/bytes/10")
                assert r.content == pattern(10) and c._conns[r.url.origin] is not first
        finally:
            srv.close()
    run(main())


@pytest.mark.parametrize("server,engine", [("ngtcp2", "qh3"), ("ngtcp2", "aioquic"),
                                           ("hypercorn", "qh3")])
def test_resumption_against_independent_servers(server, engine, request):
    """What the independent servers do with session tickets and 0-RTT
    (see docs/http3.md): hypercorn issues none; ngtcp2's gtlsserver issues
    one that qh3 2.1 cannot fit in its ClientHello (the client forgets it and
    connects in full); aioquic resumes with it and ngtcp2 accepts its 0-RTT.
    Either way the second connection's GET is answered
    intact."""
    srv = request.getfixturevalue(server)
    path = srv.path(SIZES[2]) if server == "ngtcp2" else "/bytes/1000"

    async def main():
        async with _client(srv, quic=h3.QuicLimits(engine=engine)) as c:
            r1 = await c.get(path)
            tickets = len(c.tickets)
            next(iter(c._all)).close()
            await asyncio.sleep(0.05)
            r2 = await c.get(path)
            conn = c._conns[r2.url.origin]
            await asyncio.wait_for(asyncio.shield(conn.qc.handshake), 5)
            hs = conn.qc.handshake.result()
            assert r2.content == r1.content and r2.status_code == 200
            print(f"\n{server}/{engine}: {tickets} ticket(s); second connection "
                  f"early={conn.qc.early} resumed={hs.session_resumed} "
                  f"early_data_accepted={hs.early_data_accepted}")
            return tickets, conn.qc.early, hs.session_resumed, hs.early_data_accepted
    got = run(main())
    if server == "hypercorn":
        assert got == (0, False, False, False)
    elif engine == "qh3":
        assert got == (1, False, False, False)
    else:
        assert got == (1, True, True, True)     # aioquic resumes, 0-RTT accepted
