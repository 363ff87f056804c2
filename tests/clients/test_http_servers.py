"""ringline.http against real servers on loopback: nginx (HTTP/1.1, and
HTTP/2 over TLS) and hypercorn (HTTP/1.1, h2c with prior knowledge, h2 over
TLS by ALPN). Both are started once per module with temporary configs and
certificates (trustme) and stopped at its end; each test runs on the
backend the suite runs with (RINGLINE_BACKEND).

Covers every method, bodies from 0 B to 16 MiB both ways (Content-Length
and chunked), streaming, trailers (h2), gzip, redirects, keep-alive reuse
counted on the server side (nginx's $connection), a server closing idle
keep-alive connections, 1,000 concurrent requests over one h2 connection,
h1 fallback by ALPN, a bad certificate refused with a clear error, and the
client on a plain ringline asyncio loop as well as inside the runtime.
"""
import asyncio
import hashlib
import socket
import ssl

import pytest

import ringline
import ringline.http as rh

from support import run
from support.http_app import pattern
from support.http_servers import SIZES

pytestmark = pytest.mark.timeout(120)


def _ctx(srv):
    return ssl.create_default_context(cafile=srv.tls["ca"])


# -- nginx, HTTP/1.1 -----------------------------------------------------------


def test_nginx_sizes_and_keepalive_reuse(nginx):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{nginx.port}") as c:
            conns = set()
            for n in SIZES:
                r = await c.get(f"/f{n}")
                assert r.status_code == 200 and r.http_version == "HTTP/1.1"
                assert r.content == pattern(n), n
                conns.add(r.headers["x-conn"])
            # one connection served every request, sequentially
            assert len(conns) == 1, conns
            r = await c.head("/f65536")
            assert r.content == b"" and r.headers["content-length"] == "65536"
            assert r.headers["x-conn"] in conns
            r = await c.get("/missing")
            assert r.status_code == 404
            with pytest.raises(rh.HTTPStatusError):
                r.raise_for_status()
            # 50 concurrent requests use at most 50 connections, then reuse them
            rs = await asyncio.gather(*[c.get("/f1024") for _ in range(50)])
            first = {r.headers["x-conn"] for r in rs}
            rs = await asyncio.gather(*[c.get("/f1024") for _ in range(20)])
            assert {r.headers["x-conn"] for r in rs} <= first
    run(main)


def test_nginx_gzip_and_stream(nginx):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{nginx.port}") as c:
            r = await c.get("/text.txt")
            assert r.headers["content-encoding"] == "gzip"
            assert r.content == b"hello ringline http client\n" * 4000
            async with c.stream("GET", "/f16777216") as r:
                total = 0
                h = hashlib.sha256()
                async for chunk in r.aiter_bytes():
                    total += len(chunk)
                    h.update(chunk)
            assert total == 16 << 20
            assert h.hexdigest() == hashlib.sha256(pattern(16 << 20)).hexdigest()
            # a stream abandoned half way closes its connection; the next works
            async with c.stream("GET", "/f16777216") as r:
                async for chunk in r.aiter_raw():
                    break
            r = await c.get("/f1")
            assert r.content == b"0"
            # redirects are opt-in
            r = await c.get("/redirect")
            assert r.status_code == 302 and r.headers["location"].endswith("/f1024")
            r = await c.get("/redirect", follow_redirects=True)
            assert r.status_code == 200 and len(r.content) == 1024 and len(r.history) == 1
    run(main)


def test_nginx_uploads(nginx):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{nginx.port}") as c:
            for n in (0, 1, 65536, 16 << 20):
                r = await c.post("/upload", content=pattern(n))
                assert r.status_code == 200 and r.content == str(n).encode(), n
            r = await c.put("/upload", content="text body")
            assert r.content == b"9"

            async def gen():
                for _ in range(64):
                    yield b"x" * 16384
            r = await c.post("/upload", content=gen())     # chunked
            assert r.status_code == 200
            r = await c.post("/upload", content=gen(), headers={"Content-Length": "1048576"})
            assert r.content == b"1048576"                  # streamed, not chunked
            with pytest.raises(rh.LocalProtocolError, match="shorter than its Content-Length"):
                await c.post("/upload", content=gen(), headers={"Content-Length": "2000000"})
            with pytest.raises(rh.LocalProtocolError, match="longer than its Content-Length"):
                await c.post("/upload", content=gen(), headers={"Content-Length": "1000"})
            with pytest.raises(rh.LocalProtocolError, match="does not match"):
                await c.post("/upload", content=b"abc", headers={"Content-Length": "2"})
            assert (await c.get("/f16")).content == pattern(16)
    run(main)


def test_pool_limits_and_connect_errors(nginx):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{nginx.port}",
                             limits=rh.Limits(max_connections=1),
                             timeout=rh.Timeout(5, pool=0.2)) as c:
            async with c.stream("GET", "/f1048576") as r:       # holds the only connection
                with pytest.raises(rh.PoolTimeout, match="max_connections=1"):
                    await c.get("/f1")
                waiter = asyncio.ensure_future(c.get("/f16", timeout=5))
                await asyncio.sleep(0.05)
                assert not waiter.done()
                assert len(await r.aread()) == 1 << 20
            r2 = await waiter                 # handed the connection when the stream ended
            assert r2.content == pattern(16) and r2.headers["x-conn"] == r.headers["x-conn"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]         # bound, not listening: refused
            async with rh.Client() as c:
                with pytest.raises(rh.ConnectError, match="refused"):
                    await c.get(f"http://127.0.0.1:{dead}/")
        with pytest.raises(RuntimeError, match="ringline"):
            # not on a ringline loop: a clear error
            await asyncio.get_running_loop().run_in_executor(None, _on_plain_asyncio)
    run(main)


def _on_plain_asyncio():
    async def go():
        async with rh.Client() as c:
            await c.get("http://127.0.0.1:9/")
    asyncio.run(go())


def test_nginx_idle_keepalive_closed_by_server(nginx):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{nginx.idle_port}") as c:
            r1 = await c.get("/f1")
            await asyncio.sleep(1.6)          # nginx's keepalive_timeout is 1 s
            r2 = await c.get("/f1")
            assert r2.status_code == 200
            assert r1.headers["x-conn"] != r2.headers["x-conn"]
    run(main)


def test_nginx_h2_over_tls(nginx):
    async def main():
        url = f"https://127.0.0.1:{nginx.tls_port}"
        async with rh.Client(base_url=url, verify=_ctx(nginx), http2=True) as c:
            r = await c.get("/f65536")
            assert r.http_version == "HTTP/2" and r.content == pattern(65536)
            rs = await asyncio.gather(*[c.get(f"/f{n}") for n in SIZES for _ in range(5)])
            assert [len(r.content) for r in rs] == [n for n in SIZES for _ in range(5)]
            assert len({r.headers["x-conn"] for r in rs}) == 1     # one connection
            r = await c.get("/text.txt")
            assert r.content == b"hello ringline http client\n" * 4000
        # without http2 the same TLS port speaks HTTP/1.1 (ALPN)
        async with rh.Client(base_url=url, verify=_ctx(nginx)) as c:
            r = await c.get("/f1024")
            assert r.http_version == "HTTP/1.1" and len(r.content) == 1024
    run(main)


def test_bad_certificate_is_refused(nginx):
    async def main():
        async with rh.Client() as c:          # system CAs: the test CA is unknown
            with pytest.raises(rh.ConnectError, match="certificate verification failed"):
                await c.get(f"https://127.0.0.1:{nginx.tls_port}/f1")
        async with rh.Client(verify=False) as c:  # verification off, explicitly
            assert (await c.get(f"https://127.0.0.1:{nginx.tls_port}/f1")).content == b"0"
        async with rh.Client(verify=nginx.tls["ca"]) as c:    # a CA bundle path
            assert (await c.get(f"https://127.0.0.1:{nginx.tls_port}/f1")).content == b"0"
    run(main)


# -- nghttpd (nghttp2), a third implementation ------------------------------------


def test_nghttpd_h2c_and_tls(nghttpd):
    async def main():
        for base, kw in ((f"http://127.0.0.1:{nghttpd.port}", dict(http1=False)),
                         (f"https://127.0.0.1:{nghttpd.tls_port}", dict(verify=_ctx(nghttpd)))):
            async with rh.Client(base_url=base, http2=True, timeout=30,
                                 limits=rh.Limits(max_connections=1), **kw) as c:
                rs = await asyncio.gather(*[c.get(f"/f{n}") for n in SIZES])
                assert [r.content for r in rs] == [pattern(n) for n in SIZES]
                assert all(r.http_version == "HTTP/2" for r in rs)
                body = pattern(3 << 20)
                r = await c.post("/f0", content=body)       # --echo-upload
                assert r.content == body
                rs = await asyncio.gather(*[c.get("/f16") for _ in range(300)])
                assert all(r.content == pattern(16) for r in rs)
                assert next(iter(c._pools.values())).opened == 1
    run(main, timeout=90)


# -- hypercorn -----------------------------------------------------------------


def test_hypercorn_methods_h1(hypercorn):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{hypercorn.port}") as c:
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                r = await c.request(method, "/echo", params={"q": "1"},
                                    headers={"X-Test": "yes"})
                got = r.json()
                assert got["method"] == method and got["query"] == "q=1"
                assert ["x-test", "yes"] in got["headers"]
            r = await c.post("/echo", json={"a": [1, 2]})
            assert r.json()["length"] == len(b'{"a":[1,2]}')
            body = pattern(3 << 20)
            r = await c.post("/echo", content=body)
            assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()

            async def agen():
                for i in range(0, len(body), 100000):
                    yield body[i:i + 100000]
            r = await c.post("/echo", content=agen())
            got = r.json()
            assert got["sha256"] == hashlib.sha256(body).hexdigest()
            assert ["transfer-encoding", "chunked"] in got["headers"]
            r = await c.get("/stream/1000000")
            assert r.content == pattern(1000000)
            assert r.headers["transfer-encoding"] == "chunked"
            r = await c.get("/redirect/3", follow_redirects=True)
            assert r.json()["path"] == "/echo" and len(r.history) == 3
            c.max_redirects = 2
            with pytest.raises(rh.TooManyRedirects):
                await c.get("/redirect/5", follow_redirects=True)
            c.max_redirects = 20
            r = await c.post("/echo", content=b"abc", headers={"Expect": "100-continue"})
            assert r.json()["length"] == 3
            with pytest.raises(rh.ReadTimeout):
                await c.get("/slow", timeout=rh.Timeout(5, read=0.3))
            with pytest.raises(rh.LocalProtocolError):
                await c.get("/echo", headers={"X-Bad": "a\nb"})
            c.headers["X-Default"] = "one"
            assert ["x-default", "one"] in (await c.get("/echo")).json()["headers"]
            c.headers["X-Default"] = "two"      # same count: caches must notice
            assert ["x-default", "two"] in (await c.get("/echo")).json()["headers"]
            ports = set()
            for _ in range(5):
                ports.add((await c.get("/echo")).json()["client_port"])
            assert len(ports) == 1
    run(main)


def test_hypercorn_h2c_and_h2_tls(hypercorn):
    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{hypercorn.port}", http1=False,
                             http2=True) as c:
            r = await c.get("/echo")
            assert r.http_version == "HTTP/2" and r.json()["http_version"] == "2"
            body = pattern(5 << 20)
            r = await c.post("/echo", content=body)
            assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
            r = await c.get("/bytes/16777216")
            assert r.content == pattern(16 << 20)
            # streams abandoned after their first piece: their unread bytes are
            # given back to the connection window (16 MiB), or this would stall
            for _ in range(24):
                async with c.stream("GET", "/bytes/1048576") as r:
                    async for _chunk in r.aiter_raw():
                        break
            r = await c.get("/bytes/2000000", timeout=10)
            assert len(r.content) == 2000000
            assert next(iter(c._pools.values())).opened == 1
        async with rh.Client(base_url=f"https://127.0.0.1:{hypercorn.tls_port}",
                             verify=_ctx(hypercorn), http2=True) as c:
            r = await c.get("/trailers", headers={"TE": "trailers"})
            assert r.content == b"body" and r.trailers["x-checksum"] == "abc"
            async with c.stream("GET", "/stream/300000") as r:
                got = b"".join([chunk async for chunk in r.aiter_bytes()])
            assert got == pattern(300000)
            r = await c.delete("/echo")
            assert r.json()["method"] == "DELETE"
            # injection is refused before anything is sent, on h2 as on h1
            with pytest.raises(rh.LocalProtocolError):
                await c.get("/echo", headers={"X-Bad": "a\r\nInjected: 1"})
            with pytest.raises(rh.LocalProtocolError):
                await c.get("/echo", headers={"X Bad": "v"})
            got = (await c.get("/echo", headers={"TE": "gzip", "X-Ok": "1"})).json()
            assert ["x-ok", "1"] in got["headers"]
            assert not any(k == "te" for k, _ in got["headers"])
    run(main)


def test_hypercorn_1000_streams_on_one_connection(hypercorn):
    async def main():
        # hypercorn allows 100 concurrent streams: the rest wait for room on
        # the one connection the limit allows
        async with rh.Client(base_url=f"http://127.0.0.1:{hypercorn.port}", http1=False,
                             http2=True, timeout=30,
                             limits=rh.Limits(max_connections=1)) as c:
            rs = await asyncio.gather(*[c.get("/echo", params={"i": i}) for i in range(1000)])
            assert [r.json()["query"] for r in rs] == [f"i={i}" for i in range(1000)]
            assert len({r.json()["client_port"] for r in rs}) == 1
            pool = next(iter(c._pools.values()))
            assert pool.opened == 1
    run(main, timeout=90)


def test_module_level_helpers(hypercorn):
    async def main():
        r = await rh.get(f"http://127.0.0.1:{hypercorn.port}/echo")
        assert r.json()["method"] == "GET"
        r = await rh.post(f"http://127.0.0.1:{hypercorn.port}/echo", content=b"12345")
        assert r.json()["length"] == 5
        async with rh.stream("GET", f"http://127.0.0.1:{hypercorn.port}/bytes/100") as r:
            assert await r.aread() == pattern(100)
    run(main)


class _Fetcher(ringline.Handler):
    """A runtime worker that answers each connection's line (a URL) with
    "<status> <body length> <http version>", fetched with ringline.http:
    the client runs inside a ringline.launch() worker."""

    async def on_start(self):
        self.client = rh.Client(http2=True, http1=False)

    async def on_accept(self, conn):
        line = bytearray()

        def take(view):
            line.extend(view)
            return len(view)
        while not line.endswith(b"\n"):
            if not await conn.with_data(take):
                return
        urls = line.decode().split()
        rs = await asyncio.gather(*[self.client.get(u) for u in urls])
        conn.send_nowait(" ".join(f"{r.status_code}:{len(r.content)}:{r.http_version}"
                                  for r in rs).encode() + b"\n")
        await conn.drain()


def test_inside_the_runtime(hypercorn):
    """The same client code inside a ringline.launch() worker (h2c here)."""
    import socket
    url = f"http://127.0.0.1:{hypercorn.port}/bytes/"
    with ringline.launch(_Fetcher, ("127.0.0.1", 0), ringline.Config(workers=1)) as rt:
        with socket.create_connection(("127.0.0.1", rt.port), timeout=30) as s:
            s.sendall(f"{url}10 {url}70000 {url}0\n".encode())
            got = b""
            while not got.endswith(b"\n"):
                more = s.recv(4096)
                assert more, got
                got += more
    assert got.decode().split() == ["200:10:HTTP/2", "200:70000:HTTP/2", "200:0:HTTP/2"]
