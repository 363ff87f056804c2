"""Cookies in ringline.http: ``Cookies``, ``Client(cookies=...)``,
``client.cookies``, ``response.cookies``, per-request ``cookies=``.

* The jar without I/O (``extract_cookies`` on responses made by hand, for
  any host name): the mapping API; RFC 6265's domain, path, Secure and
  expiry rules and the stricter ones of ``_cookies`` (host-only cookies,
  IP hosts, no Secure cookie set, replaced or deleted from http); the bounds (per domain, in all, per
  cookie, per Set-Cookie field; the jar's inner dicts too); hostile fields
  (huge, many, malformed, control characters, and generated ones): never
  an exception, never a stored cookie that would break a later request.
* Against the fake server (tests/support/http_fake.py, mode ``cookies``,
  HTTP/1.1) on the backend the suite runs with: the round trip, initial
  and per-request cookies, an explicit Cookie header's precedence,
  redirects (a cookie set by a redirect is sent on the next hop; the next
  hop gets the jar's cookies, not an explicit header, as in httpx), hostile
  responses (thousands of Set-Cookie fields, a huge one, refused domains);
  through an HTTP proxy (tests/support/http_proxy.py) the cookies are the
  origin's.
* Against hypercorn (tests/support/http_app.py ``/cookies``): the round
  trip and a redirect over HTTP/1.1, h2c and h2 over TLS; a Secure cookie
  goes back over https and not over http; HTTP/3 (ringline.http3's Client,
  hypercorn with aioquic): initial cookies and a redirect's.
"""
import http.cookiejar
import json
import os
import ssl
import sys
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ringline.http as rh
from ringline.http._h1 import check_header

from support.h3_servers import HypercornQuic, have_hypercorn_quic
from support.http_proxy import HttpProxy
from support.portproc import port_processes

pytestmark = pytest.mark.timeout(120)

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- helpers --------------------------------------------------------------------


def resp(url, *set_cookie):
    """A response of ``url`` carrying these Set-Cookie fields (the raw
    header list, as the connections make them)."""
    return rh.Response(200, headers=[(b"Set-Cookie", v.encode("latin-1")) for v in set_cookie],
                       request=rh.Request("GET", url))


def header(jar, url):
    """The Cookie header the jar gives a request to ``url`` (None: none)."""
    req = rh.Request("GET", url)
    jar.set_cookie_header(req)
    return req.headers.get("cookie")


def sent(jar, url):
    h = header(jar, url)
    return set(h.split("; ")) if h else set()


# -- the jar, no I/O --------------------------------------------------------------


def test_mapping_api():
    c = rh.Cookies({"a": "1"})
    c["b"] = "2"
    c.set("c", "3", domain="example.com", path="/x")
    assert list(c) == ["a", "b", "c"] and len(c) == 3 and c and "b" in c and "z" not in c
    assert c["a"] == "1" and c.get("z") is None and c.get("z", "d") == "d"
    with pytest.raises(KeyError):
        c["z"]
    c.set("a", "other", domain="example.org")
    with pytest.raises(rh.CookieConflict):
        c["a"]
    assert c.get("a", domain="example.org") == "other" and c.get("a", domain="") == "1"
    c.delete("a", domain="example.org")
    assert c["a"] == "1"
    del c["b"]
    with pytest.raises(KeyError):
        del c["b"]
    copy = rh.Cookies(c)
    assert list(copy) == ["a", "c"] and copy.jar is not c.jar
    assert copy.get("c", domain="example.com", path="/x") == "3"
    other = rh.Cookies([("x", "1"), ("y", "2")])
    other.update({"z": "3"})
    other.update(copy)
    other.update(w="4")
    assert list(other) == ["x", "y", "z", "a", "c", "w"]
    assert "x=1" in repr(other)
    std = http.cookiejar.CookieJar()
    std.set_cookie(next(iter(copy.jar)))
    assert list(rh.Cookies(std)) == ["a"]
    c.clear("no.such.domain")                 # nothing there: no error
    c.clear("example.com", "/x")
    assert list(c) == ["a"]
    c.clear()
    assert len(c) == 0 and not c and list(c.jar) == []
    with pytest.raises(ValueError):
        c.clear(path="/")


def test_api_refuses_what_would_break_a_request():
    c = rh.Cookies(max_cookie_bytes=64)
    for name, value in [("a", "x\ny"), ("a", "x\x00"), ("b\r", "1"), ("", "1"), ("a;b", "1"),
                        ("a=b", "1"), ("a", "1;2"), ("a", "\u20ac"), ("a", "v" * 64),
                        ("a b", "1"), ("a", " 1"), ("a", "1\t")]:
        with pytest.raises(ValueError, match="refused"):
            c.set(name, value)
    c.set("a", "v" * 63)                      # name + value = 64: at the bound
    assert len(c) == 1
    for bad in (0, -1, True, 1.5, "3"):
        for knob in ("max_per_domain", "max_total", "max_cookie_bytes"):
            with pytest.raises(ValueError, match=knob):
                rh.Cookies(**{knob: bad})
    kept = rh.Cookies(rh.Cookies(max_per_domain=2, max_total=7, max_cookie_bytes=99))
    assert (kept.jar.max_per_domain, kept.jar.max_total, kept.jar.policy.max_cookie_bytes) \
        == (2, 7, 99)


def test_domain_rules():
    c = rh.Cookies()
    c.extract_cookies(resp("http://www.example.com/", "host=1", "dom=2; Domain=example.com",
                           "dotcom=3; Domain=.com", "com=4; Domain=com",
                           "other=5; Domain=other.org", "suffix=6; Domain=ample.com",
                           "deeper=7; Domain=a.www.example.com"))
    assert sorted(c) == ["dom", "host"]
    assert sent(c, "http://www.example.com/") == {"host=1", "dom=2"}
    assert sent(c, "http://example.com/") == {"dom=2"}
    # a cookie without Domain goes back to exactly its host, not its subdomains
    assert sent(c, "http://a.www.example.com/") == {"dom=2"}
    assert sent(c, "http://wwwexample.com/") == set()
    assert sent(c, "http://example.org/") == set()
    # a country-code second level is no domain to set cookies for
    c.extract_cookies(resp("http://shop.example.co.uk/", "uk=1; Domain=.co.uk",
                           "ok=2; Domain=example.co.uk"))
    assert sorted(c) == ["dom", "host", "ok"]
    # cookies set through the API without a domain go to every host (as httpx)
    c.set("any", "1")
    assert sent(c, "http://example.org/") == {"any=1"}


def test_ip_host_domain_rules():
    c = rh.Cookies()
    c.extract_cookies(resp("http://127.0.0.1:8080/", "suffix=1; Domain=0.0.1",
                           "same=2; Domain=127.0.0.1", "host=3", "name=4; Domain=example.com"))
    assert sorted(c) == ["host", "same"]
    assert sent(c, "http://127.0.0.1:9090/") == {"host=3", "same=2"}   # not port-scoped
    assert sent(c, "http://10.0.0.1/") == set()
    c.extract_cookies(resp("http://[::1]:80/", "v6=1", "bad=1; Domain=1"))
    assert sent(c, "http://[::1]/") == {"v6=1"} and "bad" not in c


def test_path_rules():
    c = rh.Cookies()
    c.extract_cookies(resp("http://h.example/dir/page", "d=1", "root=2; Path=/",
                           "sub=3; Path=/dir/sub", "other=4; Path=/elsewhere"))
    assert sent(c, "http://h.example/dir") == {"d=1", "root=2"}
    assert sent(c, "http://h.example/dir/page?q=1") == {"d=1", "root=2"}
    assert header(c, "http://h.example/dir/sub/x") == "sub=3; d=1; root=2"   # longest first
    assert sent(c, "http://h.example/directory") == {"root=2"}
    assert sent(c, "http://h.example/elsewhere/a") == {"other=4", "root=2"}
    assert sent(c, "http://h.example/") == {"root=2"}


def test_secure_and_httponly():
    c = rh.Cookies()
    c.extract_cookies(resp("https://s.example/", "sec=1; Secure", "h=2; HttpOnly"))
    c.extract_cookies(resp("http://s.example/", "insecure=3; Secure"))
    assert sorted(c) == ["h", "sec"]          # no Secure cookie from http
    assert sent(c, "https://s.example/") == {"sec=1", "h=2"}
    assert sent(c, "http://s.example/") == {"h=2"}
    h = next(k for k in c.jar if k.name == "h")
    assert h.has_nonstandard_attr("HttpOnly") and not h.secure
    # over http, a Secure cookie is neither replaced nor deleted (RFC 6265bis), whatever
    # the Domain or a path under its own; other names, and https, may
    c.extract_cookies(resp("http://s.example/", "sec=evil", "sec=; Max-Age=0",
                           "sec=evil2; Domain=s.example", "sec=evil3; Path=/x", "other=1"))
    c.extract_cookies(resp("http://a.s.example/", "sec=evil4; Domain=s.example"))
    assert c.get("sec") == "1" and sorted(c) == ["h", "other", "sec"]
    assert sent(c, "https://s.example/x") == {"sec=1", "h=2", "other=1"}
    c.extract_cookies(resp("https://s.example/", "deep=1; Secure; Path=/deep"))
    c.extract_cookies(resp("http://s.example/", "deep=2; Path=/", "deep=3; Path=/deep/er"))
    assert c.get("deep", path="/") == "2" and c.get("deep", path="/deep") == "1"  # not under
    assert c.get("deep", path="/deep/er") is None
    c.extract_cookies(resp("https://s.example/", "sec=; Max-Age=0", "h=3"))
    assert c.get("sec", path="/") is None and c["h"] == "3"


def test_expiry_and_deletion():
    c = rh.Cookies()
    u = "http://e.example/"
    c.extract_cookies(resp(u, "keep=1; Max-Age=3600", "session=1", "zero=1; Max-Age=0",
                           "neg=1; Max-Age=-5", "past=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                           "agewins=1; Max-Age=0; Expires=Fri, 01 Jan 2100 00:00:00 GMT",
                           "agewins2=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60",
                           "future=1; Expires=Fri, 01 Jan 2100 00:00:00 GMT"))
    assert sorted(c) == ["agewins2", "future", "keep", "session"]
    c.extract_cookies(resp(u, "session=; Max-Age=0",
                           "future=x; Expires=Wed, 21 Oct 2015 07:28:00 GMT"))
    assert sorted(c) == ["agewins2", "keep"]
    # a cookie whose time ran out is not sent, and leaves the jar
    for cookie in c.jar:
        cookie.expires = int(time.time()) - 1
    assert header(c, u) is None and len(c) == 0


def test_bounds_per_domain_and_total():
    c = rh.Cookies()
    u = "http://a.example/"
    for i in range(120):
        c.extract_cookies(resp(u, f"n{i}={i}"))
    assert list(c) == [f"n{i}" for i in range(70, 120)]       # the 50 set last
    c.extract_cookies(resp(u, "n70=again"))                   # replaced: now the newest
    c.extract_cookies(resp(u, "z=1"))
    assert "n71" not in c and c["n70"] == "again" and len(c) == 50
    assert list(c)[-2:] == ["n70", "z"]
    # a Domain cookie and the hosts under it count as one domain
    c = rh.Cookies(max_per_domain=3)
    c.extract_cookies(resp("http://x.a.example/", "d1=1; Domain=a.example",
                           "d2=1; Domain=a.example"))
    c.extract_cookies(resp("http://a.example/", "h1=1", "h2=1"))
    assert list(c) == ["d2", "h1", "h2"]
    # in all: the cookies set longest ago go first
    c = rh.Cookies(max_per_domain=5, max_total=20)
    for h in range(10):
        c.extract_cookies(resp(f"http://h{h}.example/", *[f"c{i}={i}" for i in range(5)]))
    assert len(c) == 20 and {k.domain for k in c.jar} == {f"h{h}.example" for h in range(6, 10)}
    c = rh.Cookies()
    for h in range(70):
        c.extract_cookies(resp(f"http://h{h}.example/", *[f"c{i}={i}" for i in range(50)]))
    assert len(c) == 3000 and len(list(c.jar)) == 3000
    assert {k.domain for k in c.jar} == {f"h{h}.example" for h in range(10, 70)}


def test_bounds_keep_the_jars_inner_dicts_small():
    """A server inventing a new path for every cookie cannot grow the
    stdlib jar's nested dicts past the cookies it holds."""
    c = rh.Cookies(max_per_domain=10)
    for i in range(2000):
        c.extract_cookies(resp("http://p.example/", f"p=1; Path=/p{i}"))
    assert len(c) == 10
    inner = c.jar._cookies
    assert len(inner) == 1 and sum(len(paths) for paths in inner.values()) == 10
    c.clear("p.example", "/p1999")
    c.delete("p")
    assert inner == {} and len(c) == 0


def test_size_bounds():
    c = rh.Cookies()
    u = "http://s.example/"
    c.extract_cookies(resp(u, "fits=" + "f" * 4092, "big=" + "b" * 4094,
                           "huge=" + "h" * 60000, "after=1"))
    assert sorted(c) == ["after", "fits"]
    assert len(header(c, u)) < 4200
    c = rh.Cookies(max_cookie_bytes=100)
    c.extract_cookies(resp(u, "x=" + "y" * 99, "w=" + "y" * 100))
    assert list(c) == ["x"]
    # a field over twice the bound is not even parsed: its Max-Age=0 deletes nothing
    c.extract_cookies(resp(u, "x=; Max-Age=0; Comment=" + "c" * 200))
    assert list(c) == ["x"]
    c.extract_cookies(resp(u, "x=; Max-Age=0; Comment=" + "c" * 150))
    assert list(c) == []


MALFORMED = ["", ";", "=", "=novalue", "noequals", ";;;a=b", " ; a=1", "x=1; Expires=not a date",
             "y=1; Max-Age=abc", "y2=1; Max-Age=" + "9" * 5000, "y3=1; Max-Age=" + "9" * 100,
             "w=1; Domain=", "v=1; Path=", 'q="quoted"', "ctl=a\x01b", "ctl\x7fname=1",
             "nul=a\x00b", "u=1; Secure=yes; HttpOnly=; SameSite=Strict", "v1=1; Version=1",
             "v2=1; Version=abc", "dup=1; dup=2", "sp ace=1", "\xff\xfe=\xff", "k=v; Port=80",
             "k2=v; Port=abc", "e=1; Expires=Fri, 01 Jan 99999 00:00:00 GMT", "; Path=/",
             "a=b=c", "t=1; Domain=..example.com", "t2=1; Domain=.", "t3=1; Path=relative",
             "noage=1; Max-Age", "noage2=1;MAX-AGE ;Path=/"]


def _check_jar(c, url):
    for k in c.jar:
        assert not any(ch in (k.name + (k.value or "")) for ch in "\x00\x01\x7f\r\n")
    h = header(c, url)
    if h is not None:
        check_header(b"Cookie", h.encode("latin-1"))      # a later request can carry it


def test_malformed_set_cookie_never_raises():
    c = rh.Cookies()
    u = "http://m.example/"
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # http.cookiejar warns "bug!" where it breaks
        c.extract_cookies(resp(u, *MALFORMED))
        for field in MALFORMED:
            c.extract_cookies(resp(u, field))
    _check_jar(c, u)
    assert not {"ctl", "ctl\x7fname", "nul", "w", "k2"} & set(c)
    assert c.get("q") == '"quoted"' and c.get("a") == "b=c" and "y3" in c
    # a valueless Max-Age is ignored (RFC 6265 5.2.2), the cookie kept: http.cookiejar
    # raises on it and would lose every cookie of the response
    assert c.get("noage") == "1" and c.get("noage2") == "1"
    c = rh.Cookies()
    c.extract_cookies(resp(u, "good=1", "noage=1; Max-Age", "good2=2"))
    assert list(c) == ["good", "noage", "good2"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255,
                                                blacklist_characters="\r\n"), max_size=80),
                max_size=12),
       st.sampled_from(["http://g.example/a/b", "https://127.0.0.1/", "http://[::1]/x"]))
def test_generated_set_cookie_fields(fields, url):
    c = rh.Cookies(max_per_domain=4, max_total=6, max_cookie_bytes=40)
    c.extract_cookies(resp(url, *fields))
    assert len(c) <= 4 and len(list(c.jar)) == len(c)
    assert all(len(k.name) + len(k.value or "") <= 40 for k in c.jar)
    _check_jar(c, url)


def test_response_cookies():
    r = rh.Response(200, headers={"Set-Cookie": "a=1; Path=/"},
                    request=rh.Request("GET", "http://r.example/x"))
    assert dict(r.cookies) == {"a": "1"} and r.cookies is r.cookies
    assert not rh.Response(200, request=rh.Request("GET", "http://r.example/")).cookies
    assert not rh.Response(200, headers=[(b"Set-Cookie", b"a=1")]).cookies    # no request


# -- against the fake server (HTTP/1.1) --------------------------------------------


@pytest.fixture
def fake():
    yield from port_processes(lambda mode: [sys.executable, "-m", "support.http_fake", mode],
                              cwd=TESTS_DIR)


def got(r):
    """The Cookie fields the fake server received for ``r``'s request."""
    return r.json()["cookie"]


def got_set(r):
    fields = got(r)
    assert len(fields) <= 1, fields
    return set(fields[0].split("; ")) if fields else set()


def test_round_trip(fake, run):
    srv = fake("cookies")

    async def main():
        async with rh.Client(base_url=f"http://127.0.0.1:{srv.port}") as c:
            r = await c.get("/", params={"set": ["a=1", "b=2; Path=/", "s=3; Path=/sub"]})
            assert got(r) == [] and dict(r.cookies) == {"a": "1", "b": "2", "s": "3"}
            assert dict(c.cookies) == {"a": "1", "b": "2", "s": "3"}
            assert got_set(await c.get("/")) == {"a=1", "b=2"}
            assert got_set(await c.get("/sub/x")) == {"a=1", "b=2", "s=3"}
            c.cookies.delete("a")
            c.cookies["mine"] = "x"
            assert got_set(await c.get("/")) == {"b=2", "mine=x"}
            r = await c.get("/", params={"set": "b=; Max-Age=0"})      # the server deletes b
            assert got_set(r) == {"b=2", "mine=x"} and "b" not in c.cookies
            assert got_set(await c.get("/")) == {"mine=x"}
            r = await c.post("/", content=b"body", params={"set": "p=1"})
            assert got_set(await c.get("/")) == {"mine=x", "p=1"}
    run(main)


def test_initial_and_per_request_cookies(fake, run):
    srv = fake("cookies")
    base = f"http://127.0.0.1:{srv.port}"

    async def main():
        async with rh.Client(base_url=base, cookies={"a": "1", "b": "2"}) as c:
            assert got_set(await c.get("/")) == {"a=1", "b=2"}
            r = await c.get("/", cookies={"b": "mine", "c": "3"})       # this request only
            assert got_set(r) == {"a=1", "b=mine", "c=3"}
            assert got_set(await c.get("/")) == {"a=1", "b=2"} and "c" not in c.cookies
            await c.get("/", params={"set": "srv=1"})           # the server's, its domain
            r = await c.get("/", cookies={"srv": "mine"})       # replaced by name all the same
            assert got_set(r) == {"a=1", "b=2", "srv=mine"}
            c.cookies.delete("srv")
            async with c.stream("GET", "/", cookies={"st": "1"}) as r:
                await r.aread()
                assert got_set(r) == {"a=1", "b=2", "st=1"}
            c.cookies = {"z": "1"}
            assert got_set(await c.get("/")) == {"z=1"}
        assert got_set(await rh.get(base + "/", cookies={"x": "1"})) == {"x=1"}
        jar = rh.Cookies({"k": "v"}, max_per_domain=2)
        async with rh.Client(base_url=base, cookies=jar) as c:
            assert c.cookies is not jar and c.cookies.jar.max_per_domain == 2
            await c.get("/", params={"set": ["x1=1", "x2=2", "x3=3"]})
            assert list(c.cookies) == ["k", "x2", "x3"] and list(jar) == ["k"]
    run(main)


def test_explicit_cookie_header_wins(fake, run):
    srv = fake("cookies")
    base = f"http://127.0.0.1:{srv.port}"

    async def main():
        async with rh.Client(base_url=base, cookies={"jar": "1"}) as c:
            assert got(await c.get("/", headers={"Cookie": "mine=2"})) == ["mine=2"]
            r = await c.get("/", headers={"cookie": "mine=2"}, cookies={"req": "3"})
            assert got(r) == ["mine=2"]
            assert got(await c.get("/")) == ["jar=1"]
        async with rh.Client(base_url=base, cookies={"jar": "1"},
                             headers={"Cookie": "client=1"}) as c:
            assert got(await c.get("/")) == ["client=1"]
    run(main)


def test_redirects(fake, run):
    a, b = fake("cookies"), fake("cookies")
    base_a, base_b = f"http://127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}"

    async def main():
        async with rh.Client(base_url=base_a, follow_redirects=True) as c:
            # a cookie the redirect response set goes with the next hop
            r = await c.get("/start", params={"set": "hop=1", "location": "/next"})
            assert r.json()["path"] == "/next" and len(r.history) == 1
            assert got_set(r) == {"hop=1"} and r.history[0].cookies["hop"] == "1"
            # ... where its path matches
            r = await c.get("/x", params={"set": "scoped=1; Path=/only", "location": "/only/in"})
            assert got_set(r) == {"hop=1", "scoped=1"}
            r = await c.get("/y", params={"set": "scoped2=1; Path=/only", "location": "/else"})
            assert got_set(r) == {"hop=1"}
            # another origin (same host, another port: cookies are not port-scoped): the
            # explicit header is dropped and the jar's cookies for the new URL go instead
            r = await c.get("/", headers={"Cookie": "explicit=1"},
                            params={"set": "cross=1", "location": base_b + "/landed"})
            assert r.json()["path"] == "/landed" and got_set(r) == {"hop=1", "cross=1"}
            # on the same origin too (as httpx): every hop's Cookie is the jar's
            r = await c.get("/", headers={"Cookie": "explicit=1"}, params={"location": "/n"})
            assert got_set(r) == {"hop=1", "cross=1"}
            # a request's own cookies= are for its first hop only (as httpx)
            r = await c.get("/", cookies={"once": "1"}, params={"location": "/after"})
            assert got_set(r) == {"hop=1", "cross=1"}
    run(main)


def test_hostile_set_cookie_over_the_wire(fake, run):
    srv = fake("cookies")
    base = f"http://127.0.0.1:{srv.port}"

    async def main():
        # within the default header bounds: 100 fields, 50 kept, no error
        async with rh.Client(base_url=base) as c:
            r = await c.get("/", params={"many": 100})
            assert r.status_code == 200 and list(c.cookies) == [f"m{i}" for i in range(50, 100)]
        big = rh.Bounds(max_headers=5000, max_header_bytes=1 << 20)
        async with rh.Client(base_url=base, bounds=big) as c:
            t0 = time.monotonic()
            r = await c.get("/", params={"many": 3000})
            assert r.status_code == 200 and time.monotonic() - t0 < 10
            assert list(c.cookies) == [f"m{i}" for i in range(2950, 3000)]
            assert len(r.cookies) == 50
            r = await c.get("/", params={"huge": 60000, "set": "small=1"})
            assert r.status_code == 200 and "huge" not in c.cookies and c.cookies["small"] == "1"
            r = await c.get("/", params={"set": [f for f in MALFORMED if f.isprintable()]})
            assert r.status_code == 200
            r = await c.get("/", params={"set": ["d1=1; Domain=.com", "d2=1; Domain=example.com",
                                                 "d3=1; Domain=0.0.1", "sec=1; Secure", "ok=1"]})
            assert r.status_code == 200
            assert not {"d1", "d2", "d3", "sec", "huge"} & set(c.cookies) and "ok" in c.cookies
            r = await c.get("/")
            assert r.status_code == 200
            assert {"ok=1", "small=1"} <= got_set(r)
    run(main)


def test_through_a_proxy(fake, run, monkeypatch):
    """Through an HTTP proxy the cookies are the origin's: the origin's
    Set-Cookie is stored for the origin and its Cookie goes through the proxy."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    srv = fake("cookies")

    async def main():
        with HttpProxy("ok") as proxy:
            async with rh.Client(base_url=f"http://127.0.0.1:{srv.port}",
                                 proxy=proxy.url) as c:
                await c.get("/", params={"set": "via=1"})
                r = await c.get("/")
                assert got_set(r) == {"via=1"} and c.cookies["via"] == "1"
                assert proxy.requests[-1].headers["cookie"] == "via=1"
                assert c.cookies.jar._cookies.keys() == {"127.0.0.1"}
    run(main)


# -- against hypercorn: HTTP/1.1, h2c, h2 over TLS -------------------------------



def _echoed(r):
    return [v for k, v in r.json()["headers"] if k == "cookie"]


@pytest.mark.parametrize("proto", ["h1", "h2c", "h2"])
def test_hypercorn(hypercorn, run, proto):
    plain = f"http://127.0.0.1:{hypercorn.port}"
    if proto == "h2":
        kw = dict(http2=True, verify=ssl.create_default_context(cafile=hypercorn.tls["ca"]))
        base, version = f"https://127.0.0.1:{hypercorn.tls_port}", "HTTP/2"
    else:
        kw = dict(http1=False, http2=True) if proto == "h2c" else {}
        base, version = plain, "HTTP/2" if proto == "h2c" else "HTTP/1.1"

    async def main():
        async with rh.Client(base_url=base, follow_redirects=True, **kw) as c:
            r = await c.get("/cookies", params={"set": ["a=1", "h=2; HttpOnly",
                                                        "sec=3; Secure; Path=/"]})
            assert r.http_version == version and _echoed(r) == []
            secure = proto == "h2"
            assert sorted(c.cookies) == (["a", "h", "sec"] if secure else ["a", "h"])
            r = await c.get("/echo")
            assert set(_echoed(r)[0].split("; ")) == ({"a=1", "h=2", "sec=3"} if secure
                                                     else {"a=1", "h=2"})
            r = await c.get("/cookies", params={"set": "r=1", "location": "/echo"})
            assert r.json()["path"] == "/echo" and len(r.history) == 1
            assert "r=1" in _echoed(r)[0].split("; ")
            if secure:      # the Secure cookie does not go over http
                r = await c.get(plain + "/echo")
                assert r.http_version == "HTTP/1.1"
                assert set(_echoed(r)[0].split("; ")) == {"a=1", "h=2", "r=1"}
                # ... and an http response cannot replace it (RFC 6265bis)
                await c.get(plain + "/cookies", params={"set": ["sec=evil", "a=new"]})
                assert c.cookies["sec"] == "3" and c.cookies["a"] == "new"
    run(main)


@pytest.fixture(scope="module")
def hypercorn_quic():
    if not have_hypercorn_quic():
        pytest.skip("hypercorn and aioquic are needed")
    srv = HypercornQuic().start()
    yield srv
    srv.stop()


def test_http3(hypercorn_quic, run):
    import ringline.http3 as h3

    async def main():
        async with h3.Client(base_url=f"https://127.0.0.1:{hypercorn_quic.port}", timeout=10,
                             verify=hypercorn_quic.tls["ca"], cookies={"init": "1"},
                             follow_redirects=True) as c:
            r = await c.get("/cookies", params={"set": "q=1; Secure", "location": "/echo"})
            assert r.http_version == "HTTP/3" and len(r.history) == 1
            assert set(_echoed(r)[0].split("; ")) == {"init=1", "q=1"}
            assert r.history[0].cookies["q"] == "1" and sorted(c.cookies) == ["init", "q"]
    run(main)


def test_fake_reply_shape():
    """The fake's scripted head (support.http_fake.cookies_reply)."""
    from support.http_fake import cookies_reply
    out = cookies_reply(b"GET /p?set=a%3D1&many=2&location=/x HTTP/1.1\r\nCookie: z=1")
    head, body = out.split(b"\r\n\r\n")
    assert head.split(b"\r\n")[:5] == [b"HTTP/1.1 302 Found", b"Set-Cookie: a=1",
                                       b"Set-Cookie: m0=0; Path=/", b"Set-Cookie: m1=1; Path=/",
                                       b"Location: /x"]
    assert json.loads(body) == {"path": "/p?set=a%3D1&many=2&location=/x", "cookie": ["z=1"]}
