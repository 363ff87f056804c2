"""A stalled HTTP/3 peer: a server that stops reading a request body (its
flow control never reopens) makes the upload fail with a clear
``WriteTimeout`` after ``Timeout.write`` instead of hanging; a server that
reads slowly but steadily does not trip it. Both engines (qh3, aioquic);
each test runs on the backend the suite runs with (RINGLINE_BACKEND).
"""
import asyncio

import pytest

import ringline.http3 as h3
from ringline.http3._server import H3Server, demo_app
from ringline.quic import serve as qserve

from support import run
from support.h3_servers import tls_files

pytestmark = pytest.mark.timeout(60)


async def _hostile(tls):
    """A QUIC server that completes the handshake, then never processes
    another datagram: no window opens, nothing is acknowledged."""
    peers = []

    def on_connection(qc):
        peers.append(qc)

        def on_event(e):
            if type(e).__name__ == "HandshakeCompleted":
                qc.pause()
        qc.on_event = on_event
    ep = await qserve("127.0.0.1", 0, certfile=tls["cert"], keyfile=tls["key"], alpn=["h3"],
                      max_data=64 << 10, max_stream_data=64 << 10,
                      on_connection=on_connection)
    return ep, peers


@pytest.mark.parametrize("engine", ["qh3", "aioquic"])
@pytest.mark.parametrize("streamed", [False, True])
def test_upload_to_stalled_server_times_out(tmp_path, engine, streamed):
    tls = tls_files(str(tmp_path))

    async def main():
        ep, peers = await _hostile(tls)
        port = ep.transport.get_extra_info("sockname")[1]
        try:
            async with h3.Client(base_url=f"https://127.0.0.1:{port}", verify=tls["ca"],
                                 timeout=h3.Timeout(10, write=0.5),
                                 quic=h3.QuicLimits(engine=engine)) as c:
                body = b"s" * (1 << 20)

                async def pieces():
                    for i in range(0, len(body), 65536):
                        yield body[i:i + 65536]
                t0 = asyncio.get_running_loop().time()
                with pytest.raises(h3.WriteTimeout, match="flow control") as info:
                    await c.post("/upload", content=pieces() if streamed else body)
                print("\n", info.value)
                # well before the read timeout (10 s)
                assert asyncio.get_running_loop().time() - t0 < 9
                conn = next(iter(c._all))
                assert not conn.streams                  # the stream was reset and left
            assert peers and peers[0].paused
        finally:
            ep.close()
    run(main(), timeout=50)


def test_slow_but_steady_server_is_not_stalled(tmp_path):
    """A server that takes the body at its own slow pace (a 16 KiB window,
    datagrams held back 100 ms of every 105): no WriteTimeout, the body
    arrives."""
    tls = tls_files(str(tmp_path))

    async def main():
        srv = H3Server(demo_app)
        qc_paused = []

        def on_connection(qc):
            srv._on_connection(qc)
            loop = asyncio.get_running_loop()

            def tick():
                # hold datagrams for 100 ms, then take them for 5 ms: slow,
                # never stalled for a write period (0.3 s)
                if qc.terminated is not None:
                    return
                if qc.paused:
                    qc.resume()
                    loop.call_later(0.005, tick)
                else:
                    qc.pause()
                    qc_paused.append(1)
                    loop.call_later(0.1, tick)
            tick()
        srv.endpoint = await qserve("127.0.0.1", 0, certfile=tls["cert"], keyfile=tls["key"],
                                    alpn=["h3"], max_data=16 << 10, max_stream_data=16 << 10,
                                    on_connection=on_connection)
        try:
            async with h3.Client(base_url=f"https://127.0.0.1:{srv.port}", verify=tls["ca"],
                                 timeout=h3.Timeout(20, write=0.3)) as c:
                body = bytes(range(256)) * 4096                  # 1 MiB
                r = await c.post("/echo", content=body)
                assert r.content == body
            # the upload went on across several held-back periods, more than
            # one write period (0.3 s) in all
            assert len(qc_paused) >= 4
        finally:
            srv.close()
    run(main(), timeout=50)
