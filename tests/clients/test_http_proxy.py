"""ringline.http through HTTP proxies: a small proxy (tests/support/
http_proxy.py, stock asyncio in a thread) in front of nginx (plain HTTP/1.1,
and TLS with h2 and http/1.1 by ALPN), everything on 127.0.0.1.

Each I/O test runs on the backend the suite runs with (the ``run``
fixture asserts it), and checks:

* http:// through a proxy: absolute-form targets on connections to the
  proxy (the Host field is the origin's), bodies both ways, one pool and
  one connection to the proxy shared by two origins;
* https:// through a proxy: one CONNECT per tunnel, TLS to the origin inside
  it, HTTP/1.1 or HTTP/2 by ALPN, the tunnel reused (nginx's ``X-Conn``);
* credentials in the proxy URL become Proxy-Authorization (Basic) on
  CONNECT and on forwarded requests, never in an error message; wrong or
  missing ones give ProxyError quoting ``407`` (https) or the 407 response
  itself (http, as httpx);
* the environment (trust_env): HTTP_PROXY / HTTPS_PROXY / ALL_PROXY, lower
  case over upper case, NO_PROXY (``*``, host, port), trust_env=False;
  NO_PROXY matching in detail without I/O;
* hostile proxies: 403, closing before answering, closing in the middle
  of the status line, an answer that is not HTTP, closing after 200 (in
  the TLS handshake), an endless and a huge answer head (max_header_bytes),
  silence (Timeout.connect): each a clear error within its bound, and no
  connection left open (the pool's count, the loop's live connections,
  the proxy seeing its connection closed).

The machine's proxy variables are removed for the session
(tests/conftest.py) and again around every test here.
"""
import asyncio
import base64
import ssl
import time

import pytest

import ringline.http as rh
from ringline._conn import api as _api
from ringline.http._proxy import Proxy, ProxyRoutes, authority, parse_no_proxy, routes

from support import free_port
from support.http_app import pattern
from support.http_proxy import HttpProxy

pytestmark = pytest.mark.timeout(120)

ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    return monkeypatch


def _ctx(srv):
    return ssl.create_default_context(cafile=srv.tls["ca"])


async def _until(cond, limit=3.0):
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _no_leak(client, proxy):
    """Every pool of the client holds nothing, the loop has no live native
    connection, and the proxy saw each of its connections end."""
    for pool in client._pools.values():
        assert pool.opened == 0 and not pool.idle and not pool.h2conns, pool._name()
    assert await _until(lambda: _api.stats()["live"] == 0), _api.stats()
    assert await _until(lambda: proxy.closed == proxy.accepted), (proxy.accepted, proxy.closed)


# -- http:// through a proxy --------------------------------------------------------


def test_http_forwarded_in_absolute_form(run, nginx):
    async def main():
        with HttpProxy("ok") as proxy:
            async with rh.Client(proxy=proxy.url) as c:
                base = f"http://127.0.0.1:{nginx.port}"
                r = await c.get(f"{base}/f1024", params={"a": "1"})
                assert r.status_code == 200 and r.content == pattern(1024)
                seen = proxy.requests[0]
                assert seen.method == "GET" and seen.target == f"{base}/f1024?a=1"
                assert seen.headers["host"] == f"127.0.0.1:{nginx.port}"
                assert "proxy-authorization" not in seen.headers
                r = await c.post(f"{base}/upload", content=pattern(65536))
                assert r.content == b"65536"

                async def pieces():
                    for _ in range(8):
                        yield b"x" * 1000
                r = await c.post(f"{base}/upload", content=pieces())      # chunked
                assert r.status_code == 200
                assert proxy.requests[-1].headers["transfer-encoding"] == "chunked"
                # a second origin: the same pool, the same connection to the proxy
                r = await c.get(f"http://127.0.0.1:{nginx.idle_port}/f16")
                assert r.content == pattern(16)
                assert [s.method for s in proxy.requests] == ["GET", "POST", "POST", "GET"]
                assert proxy.accepted == 1
                (pool,) = c._pools.values()
                assert pool.forward is not None and pool.opened == 1
            await _no_leak(c, proxy)
    run(main)


# -- https:// through a CONNECT tunnel ------------------------------------------------


def test_https_through_connect_http1(run, nginx):
    async def main():
        with HttpProxy("ok") as proxy:
            async with rh.Client(proxy=proxy.url, verify=_ctx(nginx)) as c:
                url = f"https://127.0.0.1:{nginx.tls_port}"
                rs = [await c.get(f"{url}/f{n}") for n in (0, 65536, 1 << 20)]
                assert [r.content for r in rs] == [pattern(n) for n in (0, 65536, 1 << 20)]
                assert all(r.http_version == "HTTP/1.1" for r in rs)
                # one tunnel, reused: nginx saw one connection, the proxy one CONNECT
                assert len({r.headers["x-conn"] for r in rs}) == 1
                assert [(s.method, s.target) for s in proxy.requests] == [
                    ("CONNECT", f"127.0.0.1:{nginx.tls_port}")]
                assert proxy.requests[0].headers["host"] == f"127.0.0.1:{nginx.tls_port}"
                r = await c.post(f"{url}/upload", content=b"y" * 5000)
                assert r.content == b"5000" and r.headers["x-conn"] == rs[0].headers["x-conn"]
                (key,) = c._pools
                assert key[1] == ("https", "127.0.0.1", nginx.tls_port)     # (proxy, origin)
            await _no_leak(c, proxy)
    run(main)


def test_https_through_connect_http2(run, nginx):
    async def main():
        with HttpProxy("ok") as proxy:
            async with rh.Client(proxy=proxy.url, verify=_ctx(nginx), http2=True) as c:
                url = f"https://127.0.0.1:{nginx.tls_port}"
                rs = await asyncio.gather(*[c.get(f"{url}/f{n}") for n in (16, 65536) * 25])
                assert all(r.http_version == "HTTP/2" for r in rs)
                assert [r.content for r in rs] == [pattern(n) for n in (16, 65536) * 25]
                assert len({r.headers["x-conn"] for r in rs}) == 1
                assert [s.method for s in proxy.requests] == ["CONNECT"]
            await _no_leak(c, proxy)
    run(main)


# -- credentials -------------------------------------------------------------------------


def test_proxy_credentials(run, nginx):
    async def main():
        with HttpProxy("ok", credentials=("us@er", "p:ss wörd")) as proxy:
            good = f"http://us%40er:p%3Ass%20w%C3%B6rd@127.0.0.1:{proxy.port}"
            expected = "Basic " + base64.b64encode("us@er:p:ss wörd".encode()).decode()
            async with rh.Client(proxy=good, verify=_ctx(nginx)) as c:
                r = await c.get(f"https://127.0.0.1:{nginx.tls_port}/f16")
                assert r.content == pattern(16)
                r = await c.get(f"http://127.0.0.1:{nginx.port}/f16")
                assert r.content == pattern(16)
                assert [s.headers.get("proxy-authorization") for s in proxy.requests] == \
                    [expected, expected]
            for url in (f"http://us%40er:wrong@127.0.0.1:{proxy.port}", proxy.url):
                async with rh.Client(proxy=url, verify=_ctx(nginx)) as c:
                    with pytest.raises(rh.ProxyError) as info:
                        await c.get(f"https://127.0.0.1:{nginx.tls_port}/f16")
                    msg = str(info.value)
                    assert "407 Proxy Authentication Required" in msg, msg
                    assert f"CONNECT 127.0.0.1:{nginx.tls_port}" in msg, msg
                    assert "wrong" not in msg and "us@er" not in msg and "us%40er" not in msg
                    assert info.value.request is not None
                    # http: the proxy's 407 is the response, as httpx gives it
                    r = await c.get(f"http://127.0.0.1:{nginx.port}/f16")
                    assert r.status_code == 407
                    assert r.headers["proxy-authenticate"] == 'Basic realm="test"'
                await _no_leak(c, proxy)
    run(main)


# -- the environment -------------------------------------------------------------------


def test_env_proxies(run, nginx, clean_env):
    async def main():
        plain = f"http://127.0.0.1:{nginx.port}/f16"
        tls = f"https://127.0.0.1:{nginx.tls_port}/f16"
        dead = f"http://127.0.0.1:{free_port()}"     # nothing listens: used, it fails
        with HttpProxy("ok") as proxy:
            # HTTP_PROXY for http://, HTTPS_PROXY for https://
            clean_env.setenv("HTTP_PROXY", proxy.url)
            clean_env.setenv("HTTPS_PROXY", proxy.url.replace("http://", ""))  # no scheme
            async with rh.Client(verify=_ctx(nginx)) as c:
                assert (await c.get(plain)).content == pattern(16)
                assert (await c.get(tls)).content == pattern(16)
            assert [s.method for s in proxy.requests] == ["GET", "CONNECT"]
            # trust_env=False: straight to the origin
            async with rh.Client(verify=_ctx(nginx), trust_env=False) as c:
                assert (await c.get(plain)).content == pattern(16)
                assert (await c.get(tls)).content == pattern(16)
            assert len(proxy.requests) == 2
            # lower case wins over upper case
            clean_env.setenv("HTTP_PROXY", dead)
            clean_env.setenv("http_proxy", proxy.url)
            async with rh.Client() as c:
                assert (await c.get(plain)).content == pattern(16)
            assert len(proxy.requests) == 3
            # ALL_PROXY when the scheme has none
            for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY"):
                clean_env.delenv(name)
            clean_env.setenv("all_proxy", proxy.url)
            async with rh.Client(verify=_ctx(nginx)) as c:
                assert (await c.get(plain)).content == pattern(16)
                assert (await c.get(tls)).content == pattern(16)
            assert len(proxy.requests) == 5
            # NO_PROXY: this host and port, then everything
            clean_env.setenv("all_proxy", dead)
            for no in (f"localhost, 127.0.0.1:{nginx.port},127.0.0.1:{nginx.tls_port}",
                       "127.0.0.1", "*"):
                clean_env.setenv("NO_PROXY", no)
                async with rh.Client(verify=_ctx(nginx)) as c:
                    assert (await c.get(plain)).content == pattern(16)
                    assert (await c.get(tls)).content == pattern(16)
            # NO_PROXY naming another port of the host does not bypass
            clean_env.setenv("all_proxy", proxy.url)
            clean_env.setenv("NO_PROXY", f"127.0.0.1:{nginx.idle_port}")
            async with rh.Client() as c:
                assert (await c.get(plain)).content == pattern(16)
            assert len(proxy.requests) == 6
            # an explicit proxy ignores the environment, NO_PROXY included
            clean_env.setenv("NO_PROXY", "*")
            async with rh.Client(proxy=proxy.url) as c:
                assert (await c.get(plain)).content == pattern(16)
            assert len(proxy.requests) == 7
    run(main)


def test_no_proxy_matching():
    origin = lambda host, scheme="https", port=443: (scheme, host, port)  # noqa: E731
    p = Proxy("http://127.0.0.1:3128")

    def through(no_proxy, *o):
        bypass = parse_no_proxy(no_proxy)
        return bypass is not None and ProxyRoutes(p, p, bypass).select(origin(*o)) is p

    assert parse_no_proxy("*") is None and parse_no_proxy("a.com, *") is None
    for entry in ("example.com", ".example.com", "*.example.com", "EXAMPLE.com."):
        assert not through(entry, "example.com")
        assert not through(entry, "www.example.com")
        assert not through(entry, "a.b.example.com")
        assert through(entry, "badexample.com")
        assert through(entry, "example.com.evil")
    assert not through("example.com:8443", "example.com", "https", 8443)
    assert through("example.com:8443", "example.com")
    assert not through("http://example.com", "example.com", "http", 80)
    assert through("http://example.com", "example.com")
    assert not through("10.1.2.3", "10.1.2.3") and through("2.3", "10.1.2.3")
    assert not through("::1", "::1") and not through("[::1]:443", "::1")
    assert through("[::1]:80", "::1")
    assert not through(" localhost ,, other ", "localhost") and through("", "localhost")


def test_proxy_urls_and_env_errors(clean_env):
    for bad, text in (("https://127.0.0.1:3128", "only http://"),
                      ("socks5://u:secret@127.0.0.1:1080", "only http://"),
                      ("http://:3128", "no host"), ("http://127.0.0.1:99999", "invalid port")):
        with pytest.raises(ValueError, match=text) as info:
            rh.Client(proxy=bad)
        assert "secret" not in str(info.value)
    with pytest.raises(TypeError):
        rh.Client(proxy=3128)
    clean_env.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="HTTPS_PROXY"):
        rh.Client()
    assert rh.Client(trust_env=False)._proxies is None
    clean_env.delenv("HTTPS_PROXY")
    assert rh.Client()._proxies is None                 # nothing set: no routes at all
    clean_env.setenv("REQUEST_METHOD", "GET")           # a CGI program: HTTP_PROXY ignored
    clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert routes(None, True) is None
    clean_env.setenv("http_proxy", "http://127.0.0.1:3128")
    assert routes(None, True).http.name == "http://127.0.0.1:3128"
    assert repr(Proxy("http://u:secret@127.0.0.1:1")) == \
        "<Proxy http://127.0.0.1:1 with credentials>"
    assert Proxy(rh.URL("http://127.0.0.1:3128")).name == "http://127.0.0.1:3128"
    v6 = Proxy("http://[::1]")
    assert (v6.host, v6.port, v6.name, v6.auth) == ("::1", 80, "http://[::1]:80", None)
    assert authority("::1", 443) == b"[::1]:443"
    assert authority("bücher.example", 443) == b"xn--bcher-kva.example:443"


# -- hostile proxies -------------------------------------------------------------------


@pytest.mark.parametrize("mode, error, text", [
    ("forbid", rh.ProxyError, "refused CONNECT 127.0.0.1:{port}: 403 Forbidden"),
    ("close", rh.ProxyError, "closed the connection without answering CONNECT"),
    ("cut", rh.ProxyError, "closed the connection in its answer to CONNECT"),
    ("garbage", rh.ProxyError, "invalid answer to CONNECT 127.0.0.1:{port}"),
    ("drop", rh.ConnectError, "through proxy http://127.0.0.1:{proxy}"),
    ("endless", rh.ProxyError, "exceeds max_header_bytes=65536"),
    ("huge", rh.ProxyError, "exceeds max_header_bytes=65536"),
])
def test_hostile_proxy(run, nginx, mode, error, text):
    async def main():
        with HttpProxy(mode) as proxy:
            async with rh.Client(proxy=proxy.url, verify=_ctx(nginx), timeout=10) as c:
                start = time.monotonic()
                with pytest.raises(error) as info:
                    await c.get(f"https://127.0.0.1:{nginx.tls_port}/f16")
                assert time.monotonic() - start < 5
                msg = str(info.value)
                assert text.format(port=nginx.tls_port, proxy=proxy.port) in msg, msg
                assert f"proxy http://127.0.0.1:{proxy.port}" in msg, msg
                await _no_leak(c, proxy)
                if mode == "drop":
                    assert "closed" in msg, msg
                # a smaller bound is the one enforced
            if mode in ("endless", "huge"):
                async with rh.Client(proxy=proxy.url, verify=_ctx(nginx),
                                     bounds=rh.Bounds(max_header_bytes=1024)) as c:
                    with pytest.raises(rh.ProxyError, match="max_header_bytes=1024"):
                        await c.get(f"https://127.0.0.1:{nginx.tls_port}/f16")
                    await _no_leak(c, proxy)
    run(main)


def test_silent_proxy_bounded_by_connect_timeout(run, nginx):
    async def main():
        with HttpProxy("silent") as proxy:
            t = rh.Timeout(10, connect=0.5)
            async with rh.Client(proxy=proxy.url, verify=_ctx(nginx), timeout=t) as c:
                start = time.monotonic()
                with pytest.raises(rh.ConnectTimeout) as info:
                    await c.get(f"https://127.0.0.1:{nginx.tls_port}/f16")
                assert 0.4 < time.monotonic() - start < 3
                msg = str(info.value)
                assert f"proxy http://127.0.0.1:{proxy.port} did not answer CONNECT" in msg
                assert "0.5 s" in msg
                await _no_leak(c, proxy)
                # a forwarded request waits for its answer as on any connection
                with pytest.raises(rh.ReadTimeout):
                    await c.get(f"http://127.0.0.1:{nginx.port}/f16",
                                timeout=rh.Timeout(10, read=0.5))
                await _no_leak(c, proxy)
    run(main)


def test_proxy_not_listening(run, nginx):
    async def main():
        port = free_port()
        async with rh.Client(proxy=f"http://127.0.0.1:{port}", verify=_ctx(nginx)) as c:
            for url in (f"https://127.0.0.1:{nginx.tls_port}/", f"http://127.0.0.1:{nginx.port}/"):
                with pytest.raises(rh.ConnectError, match=f"proxy http://127.0.0.1:{port}"):
                    await c.get(url)
            for pool in c._pools.values():
                assert pool.opened == 0
    run(main)
