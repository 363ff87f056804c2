"""Session tickets, resumption and 0-RTT in ringline.quic / ringline.http3.

Covers: the bounded ``TicketStore`` (capacity, expiry, a server ticket
resuming once); against ringline.http3's own server (in process), on both
engines: the second connection to an origin is resumed and its GET goes as
0-RTT early data that the server accepts (aioquic; with qh3 early data is
off by default -- qh3 2.1 sometimes loses its 1-RTT key on a 0-RTT
connection -- and the resumed connection carries the GET after the
handshake), answered once; a server that no longer knows the ticket refuses
the early data and the GET sent early is answered exactly once all the same
(the engine sends it again after the handshake); a POST on a 0-RTT
connection waits for the handshake; tickets off means a full handshake. Against the independent servers of
test_http3.py (hypercorn's aioquic server, ngtcp2's gtlsserver) the test
documents what they do (hypercorn issues no tickets: every connection is a
full handshake, requests unaffected). Each test runs on the backend the
suite runs with (RINGLINE_BACKEND).
"""
import asyncio
import datetime
import time

import pytest

import ringline.http3 as h3
from ringline.http3._server import demo_app, pattern
from ringline.quic import TicketStore

from support import run
from support.h3_servers import tls_files

pytestmark = pytest.mark.timeout(60)


class _T:
    def __init__(self, ticket, minutes=10):
        self.ticket = ticket
        self.not_valid_after = datetime.datetime.now(datetime.timezone.utc) + \
            datetime.timedelta(minutes=minutes)


def test_ticket_store_bounds():
    s = TicketStore(max_entries=3)
    for i in range(5):
        s.put(("o", i), _T(b"%d" % i))
    assert len(s) == 3 and s.get(("o", 0)) is None and s.get(("o", 4)).ticket == b"4"
    s.put(("o", 9), _T(b"x", minutes=-1))                 # past its own expiry
    assert s.get(("o", 9)) is None and ("o", 9) not in s._items
    srv = TicketStore()
    srv.add(_T(b"abc"))
    assert srv.fetch(b"abc").ticket == b"abc"
    assert srv.fetch(b"abc") is None                      # resumes once
    old = TicketStore(max_age=0.01)
    old.put("k", _T(b"k"))
    time.sleep(0.02)
    assert old.get("k") is None
    with pytest.raises(ValueError):
        TicketStore(max_entries=0)


def _counting():
    hits = []

    def app(method, path, headers, body):
        hits.append((method, path))
        return demo_app(method, path, headers, body)
    return app, hits


def _second(c, srv, hits, path="/hello"):
    """Close the first connection; the next request dials again."""
    async def go():
        first = next(iter(c._all))
        first.close()
        await asyncio.sleep(0.05)
        del hits[:]
        r = await c.get(path)
        conn = c._conns[r.url.origin]
        await asyncio.wait_for(asyncio.shield(conn.qc.handshake), 5)
        return r, conn, conn.qc.handshake.result()
    return go()


@pytest.mark.parametrize("engine", ["qh3", "aioquic"])
@pytest.mark.parametrize("refused", [False, True])
def test_early_data_accepted_or_refused_answered_once(tmp_path, engine, refused):
    """Accepted: the second connection is resumed (aioquic: its GET went
    as 0-RTT; qh3: early data is off by default, the GET waits for the
    resumed handshake). Refused (the server forgot its tickets): a full
    handshake, and the GET sent early (aioquic) is sent again after it and
    answered exactly once."""
    tls = tls_files(str(tmp_path))
    path = f"/bytes/{50_000}"

    async def main():
        app, hits = _counting()
        srv = await h3.serve("127.0.0.1", 0, certfile=tls["cert"], keyfile=tls["key"], app=app,
                             engine=engine)
        try:
            async with h3.Client(base_url=f"https://127.0.0.1:{srv.port}", verify=tls["ca"],
                                 timeout=10, quic=h3.QuicLimits(engine=engine)) as c:
                await c.get("/hello")
                first = next(iter(c._all))
                assert not first.qc.early
                assert len(c.tickets) == 1 and len(srv.tickets) >= 1
                if refused:
                    srv.tickets._items.clear()
                r, conn, hs = await _second(c, srv, hits, path)
                assert conn.qc.early == (engine == "aioquic")  # the GET went early
                assert hs.session_resumed == (not refused)
                if engine == "aioquic":
                    assert hs.early_data_accepted == (not refused)
                assert r.content == pattern(50_000)
                assert hits == [("GET", path)]                # answered exactly once
                r = await c.post("/echo", content=b"after")   # 1-RTT
                assert r.content == b"after"
        finally:
            srv.close()
    run(main())


def test_post_waits_for_handshake_and_tickets_off(tmp_path):
    tls = tls_files(str(tmp_path))

    async def main():
        app, hits = _counting()
        srv = await h3.serve("127.0.0.1", 0, certfile=tls["cert"], keyfile=tls["key"], app=app)
        try:
            async with h3.Client(base_url=f"https://127.0.0.1:{srv.port}", verify=tls["ca"],
                                 timeout=10, quic=h3.QuicLimits(engine="aioquic")) as c:
                await c.get("/hello")
                next(iter(c._all)).close()
                await asyncio.sleep(0.05)
                del hits[:]
                task = asyncio.ensure_future(c.post("/echo", content=b"not early"))
                for _ in range(1000):
                    if c._conns:
                        break
                    await asyncio.sleep(0)
                conn = next(iter(c._conns.values()))
                assert conn.qc.early
                r = await task
                assert r.content == b"not early" and hits == [("POST", "/echo")]
            async with h3.Client(base_url=f"https://127.0.0.1:{srv.port}", verify=tls["ca"],
                                 timeout=10, quic=h3.QuicLimits(session_tickets=False)) as c:
                assert c.tickets is None
                await c.get("/hello")
                next(iter(c._all)).close()
                await asyncio.sleep(0.05)
                r = await c.get("/hello")
                conn = c._conns[r.url.origin]
                assert not conn.qc.early and not conn.qc.handshake.result().session_resumed
        finally:
            srv.close()
    run(main())
