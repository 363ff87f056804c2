"""UDP GSO on ringline's datagram path and in ringline.quic's endpoint.

Covers: a GSO send of N segments (the last shorter) arriving as N intact
datagrams; a server address given per send; bad segment sizes refused; the
endpoint's runs of equal-size datagrams leaving as one SENDMSG each, with
a 64 MiB download and upload byte-exact with GSO on and off and the
SENDMSG counts of both reported and compared (the syscall economy);
``RINGLINE_QUIC_GSO=0`` and a kernel refusal (EIO) turning GSO off. Every
test runs on the backend the suite runs with (RINGLINE_BACKEND).
"""
import asyncio
import errno
import hashlib
import socket

import pytest

import ringline.http3 as h3
from ringline.http3._server import pattern
from ringline.quic._endpoint import QuicEndpoint, gso_default

from support import run
from support.h3_servers import tls_files

pytestmark = pytest.mark.timeout(180)


def _drain(sock):
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


@pytest.mark.parametrize("connected", [True, False])
def test_gso_send_arrives_as_segments(connected):
    async def main():
        loop = asyncio.get_running_loop()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        errors = []

        class P(asyncio.DatagramProtocol):
            def error_received(self, exc):
                errors.append(exc)
        if connected:
            t, _ = await loop.create_datagram_endpoint(P, remote_addr=rx.getsockname())
            addr = None
        else:
            t, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
            addr = rx.getsockname()
        try:
            segs = [bytes([i]) * 1200 for i in range(40)] + [b"tail" * 3]
            t.sendto_gso(b"".join(segs), 1200, addr)
            got = []
            for _ in range(200):
                await asyncio.sleep(0.005)
                got += _drain(rx)
                if len(got) >= len(segs):
                    break
            assert got == segs and not errors
            with pytest.raises(ValueError):
                t.sendto_gso(b"x" * 10, 0, addr)
            with pytest.raises(ValueError):
                t.sendto_gso(b"x" * 10, 70000, addr)
        finally:
            t.close()
            rx.close()
    run(main())


def test_endpoint_runs_and_refusal():
    """Runs of equal sizes (the last may be shorter) become one SENDMSG
    each; an EIO reported for a GSO send turns GSO off for good."""
    sent = []

    class T:
        def sendto(self, data, addr=None):
            sent.append(("one", len(data)))

        def sendto_gso(self, data, seg, addr=None):
            sent.append(("gso", len(data), seg))

    ep = QuicEndpoint(asyncio.new_event_loop())
    ep.transport = T()
    ep.gso = True
    dg = [(b"a" * 1200, None)] * 3 + [(b"b" * 500, None), (b"c" * 1200, None),
                                      (b"d" * 1300, None)]
    ep.send(dg, None)
    assert sent == [("gso", 3600 + 500, 1200), ("one", 1200), ("one", 1300)]
    assert ep.sendmsgs == 3 and ep.gso_sends == 1 and ep.datagrams_out == 6
    sent.clear()
    ep.send([(b"x" * 1000, None)] * 150, None)           # bounded: 64 per send
    assert sent == [("gso", 64000, 1000), ("gso", 64000, 1000), ("gso", 22000, 1000)]
    ep.error_received(OSError(errno.ECONNREFUSED, "refused"))
    assert ep.gso
    ep.error_received(OSError(errno.EIO, "no offload"))
    assert not ep.gso and ep.gso_refused.errno == errno.EIO
    sent.clear()
    ep.send(dg[:2], None)
    assert sent == [("one", 1200), ("one", 1200)]
    ep.loop.close()


def test_env_switch(monkeypatch):
    monkeypatch.setenv("RINGLINE_QUIC_GSO", "0")
    assert not gso_default()
    monkeypatch.setenv("RINGLINE_QUIC_GSO", "1")
    assert gso_default()
    with pytest.raises(ValueError):
        h3.QuicLimits(gso="yes")


def _transfer(tmp_path, gso, size):
    """Download and upload ``size`` bytes over one in-process connection;
    returns the client's SENDMSG counts (upload, download) and GSO use."""
    tls = tls_files(str(tmp_path))
    out = {}

    async def main():
        srv = await h3.serve("127.0.0.1", 0, certfile=tls["cert"], keyfile=tls["key"],
                             gso=gso)
        try:
            async with h3.Client(base_url=f"https://127.0.0.1:{srv.port}", verify=tls["ca"],
                                 timeout=60, quic=h3.QuicLimits(gso=gso)) as c:
                await c.get("/hello")
                ep = next(iter(c._all)).qc.endpoint
                out["gso"] = ep.gso
                body = pattern(size)
                s0 = ep.sendmsgs
                r = await c.post("/length", content=body)
                assert r.text == f"{size} {hashlib.sha256(body).hexdigest()}"
                out["up"] = ep.sendmsgs - s0
                out["up_dg"] = ep.datagrams_out
                s0 = ep.sendmsgs
                r = await c.get(f"/bytes/{size}")
                assert r.content == body                 # byte-exact
                out["down"] = ep.sendmsgs - s0
                out["srv_sendmsgs"] = srv.endpoint.sendmsgs
        finally:
            srv.close()
    run(main(), timeout=170)
    return out


@pytest.mark.slow
def test_64mib_gso_vs_plain(tmp_path):
    on = _transfer(tmp_path, True, 64 << 20)
    off = _transfer(tmp_path, False, 64 << 20)
    print(f"\n64 MiB upload: {on['up']} SENDMSG with GSO vs {off['up']} without; "
          f"download (client ACKs): {on['down']} vs {off['down']}; server sends "
          f"{on['srv_sendmsgs']} vs {off['srv_sendmsgs']}")
    assert on["gso"] and not off["gso"]
    assert on["up"] * 5 < off["up"]
    assert on["srv_sendmsgs"] * 5 < off["srv_sendmsgs"]


def test_4mib_gso_vs_plain(tmp_path):
    on = _transfer(tmp_path, True, 4 << 20)
    off = _transfer(tmp_path, False, 4 << 20)
    print(f"\n4 MiB upload: {on['up']} SENDMSG with GSO vs {off['up']} without")
    assert on["gso"] and not off["gso"]
    assert on["up"] < off["up"]
