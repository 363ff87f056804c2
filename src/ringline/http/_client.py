"""``Client``, shaped like httpx's ``AsyncClient``, and the module-level
one-shot helpers.

Owns: merging a request from the client's defaults (base_url, headers,
params, timeout) and the call's arguments; request bodies (bytes, str,
``json=``, form ``data=``, iterables and async iterables, streamed with
chunked coding when the length is unknown); the pools (one
``OriginPool`` per origin; through an HTTP proxy, one per proxy and https
origin, one per proxy for http: ``_proxy`` chooses); the one retry of a
request that met a stale keep-alive connection (idempotent methods) or a
GOAWAY before the server processed it, and the one move of a request that found its HTTP/2
connection's stream ids used up (nothing was sent: any request, a streamed
body included); redirects (off unless ``follow_redirects=True``; at most
``max_redirects``); ``stream()``.

Cookies are ``_cookies``'s: ``send`` asks the jar (``client.cookies``) for
each hop's Cookie header and gives it every response, redirects included.

Lifecycle: OPEN (pools are created on first use) -> ``aclose()`` (every
pool's connections closed; further requests raise RuntimeError). A Client
belongs to the ringline loop it is first used on: inside ``ringline.serve``
workers or on an ``asyncio.Runner(loop_factory=ringline.new_event_loop)``,
the same code either way.
"""
from __future__ import annotations

import json as _json
import ssl
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple, Union
from urllib.parse import urlencode

from ._config import DEFAULT_BOUNDS, DEFAULT_TIMEOUT, Bounds, Limits, Timeout
from ._cookies import Cookies
from ._decode import SUPPORTED
from ._errors import LocalProtocolError, RequestError, TooManyRedirects, TransportError
from ._h1 import check_header
from ._h1conn import H1Connection, StaleConnection, StreamIdsExhausted
from ._models import URL, Headers, Request, Response, merge_url
from ._pool import OriginPool
from ._proxy import routes

__all__ = ["Client", "request", "get", "post", "put", "patch", "delete", "head", "options",
           "stream"]

_UNSET: Any = object()
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
USER_AGENT = "ringline-http/0.1"


class _Content:
    """A request body that is streamed (iterable or async iterable)."""

    __slots__ = ("source", "chunked", "length")

    def __init__(self, source: Any, chunked: bool, length: Optional[int] = None) -> None:
        self.source = source
        self.chunked = chunked
        self.length = length        # a Content-Length the caller set, checked as sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        src = self.source
        if hasattr(src, "__aiter__"):
            async for piece in src:
                yield piece.encode() if isinstance(piece, str) else bytes(piece)
        else:
            for piece in src:
                yield piece.encode() if isinstance(piece, str) else bytes(piece)


def _ssl_context(verify: Any, http1: bool, http2: bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        ctx = ssl.create_default_context(cafile=verify)
    else:
        ctx = ssl.create_default_context()
    protos = (["h2"] if http2 else []) + (["http/1.1"] if http1 else [])
    try:
        ctx.set_alpn_protocols(protos)
    except NotImplementedError:     # pragma: no cover
        pass
    return ctx


class Client:
    """An HTTP client with connection pools (see the module docstring).

    ``Client(base_url=None, headers=None, params=None, timeout=5.0,
    limits=Limits(), bounds=Bounds(), verify=True, http1=True, http2=False,
    follow_redirects=False, max_redirects=20, proxy=None, trust_env=True)``.
    ``verify`` is True (system CAs), False, a CA bundle path or an
    ``ssl.SSLContext``. ``http2=True`` offers h2 by ALPN on https; with
    ``http1=False`` too, plain http URLs use h2c with prior knowledge.
    ``proxy="http://[user:password@]host:port"`` sends every request
    through that proxy; without it, ``trust_env`` reads HTTP_PROXY,
    HTTPS_PROXY, ALL_PROXY and NO_PROXY once, here.
    """

    def __init__(self, *, base_url: Union[str, URL, None] = None, headers: Any = None,
                 cookies: Any = None,
                 params: Any = None, timeout: Any = DEFAULT_TIMEOUT,
                 limits: Optional[Limits] = None, bounds: Optional[Bounds] = None,
                 verify: Any = True, http1: bool = True, http2: bool = False,
                 proxy: Any = None, trust_env: bool = True,
                 follow_redirects: bool = False, max_redirects: int = 20) -> None:
        if not (http1 or http2):
            raise ValueError("at least one of http1 and http2 must be enabled")
        self.base_url = URL(str(base_url).rstrip("/") + "/") if base_url else None
        self.headers = Headers({"User-Agent": USER_AGENT, "Accept": "*/*",
                                "Accept-Encoding": ", ".join(SUPPORTED)})
        if headers:
            self.headers.update(headers)
        self.params = params
        self._cookies = Cookies(cookies)
        self.timeout = timeout if isinstance(timeout, Timeout) else Timeout(timeout)
        self.limits = limits or Limits()
        self.bounds = bounds or DEFAULT_BOUNDS
        self.http1 = http1
        self.http2 = http2
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._verify = verify
        self._ssl: Optional[ssl.SSLContext] = None
        self.trust_env = trust_env
        self._proxies = routes(proxy, trust_env)
        self._pools: Dict[Any, OriginPool] = {}
        self._closed = False
        self._hdr_cache: Any = None
        self._url_cache: Dict[str, URL] = {}
        self._bare: Dict[str, List[Tuple[bytes, bytes]]] = {}

    # -- lifecycle --

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.aclose()
        self._pools.clear()

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def cookies(self) -> Cookies:
        """The cookie jar (``Cookies``): what ``cookies=`` gave and what
        responses set; each request gets the cookies matching its URL
        unless it (or the client's ``headers``) sets a Cookie header."""
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = Cookies(cookies)

    # -- building requests --

    def _default_raw(self) -> List[Tuple[bytes, bytes]]:
        cache = self._hdr_cache
        h = self.headers
        if cache is None or cache[0] is not h or cache[1] != h.version:
            raw = []
            for _, name, value in h._list():
                n, v = name.encode("latin-1"), value.encode("latin-1")
                check_header(n, v)
                raw.append((n, v))
            cache = self._hdr_cache = (h, h.version, raw)
            self._bare.clear()
        return cache[2]

    def _url(self, url: Union[str, URL], params: Any) -> URL:
        if params is None and self.params is None and type(url) is str:
            u = self._url_cache.get(url)
            if u is None:
                u = merge_url(self.base_url, url)
                if len(self._url_cache) > 512:
                    self._url_cache.clear()
                self._url_cache[url] = u
            return u
        merged = params
        if self.params:
            merged = list(_pairs(self.params)) + list(_pairs(params or ()))
        return merge_url(self.base_url, url, merged)

    def build_request(self, method: str, url: Union[str, URL], *, content: Any = None,
                      data: Any = None, json: Any = None, params: Any = None,
                      headers: Any = None, cookies: Any = None) -> Request:
        u = self._url(url, params)
        h = Headers(headers) if headers else None
        body: Optional[bytes] = None
        stream = None
        ctype = None
        if json is not None:
            body = _json.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            ctype = "application/json"
        elif data is not None:
            if isinstance(data, (bytes, str)):
                content = data
            else:
                body = urlencode(data, doseq=True).encode()
                ctype = "application/x-www-form-urlencoded"
        if content is not None:
            if isinstance(content, str):
                body = content.encode()
            elif isinstance(content, (bytes, bytearray, memoryview)):
                body = bytes(content)
            elif hasattr(content, "__aiter__") or hasattr(content, "__iter__"):
                stream = content
            else:
                raise TypeError(f"content must be bytes, str, an iterable or an async "
                                f"iterable of bytes, got {type(content).__name__}")
        req = Request(method, u, headers=h, content=body, stream=stream)
        if ctype is not None and (h is None or "content-type" not in h):
            req.extensions["content-type"] = ctype
        if cookies:     # this request's, with the jar's (redirects use the jar's alone)
            req.extensions["cookies"] = Cookies(cookies)
        return req

    def _wire_headers(self, req: Request, h2: bool) -> Tuple[List[Tuple[bytes, bytes]], int,
                                                              Optional[_Content]]:
        """The header list to send (defaults first, already validated) and
        the body stream, deciding Content-Length or chunked."""
        defaults = self._default_raw()
        extra = req.headers._list() if (req.headers._raw is not None or req.headers._items) \
            else ()
        if not extra and req.content is None and req.stream is None and not h2 \
                and req.method not in ("POST", "PUT", "PATCH") and "cookie" not in req.extensions:
            # the common bodiless request: Host + defaults, built once per host
            netloc = req.url.netloc
            bare = self._bare.get(netloc)
            if bare is None:
                if len(self._bare) > 64:
                    self._bare.clear()
                bare = self._bare[netloc] = [(b"Host", _host_bytes(netloc))] + defaults
            return bare, len(bare), None
        if extra:
            override = {k for k, _, _ in extra}
            base = [(n, v) for n, v in defaults if n.decode("latin-1").lower() not in override]
        else:
            base = list(defaults)
        checked = len(base) + (0 if h2 else 1)
        out = base if h2 else [(b"Host", _host_bytes(req.url.netloc))] + base
        has_len = has_te = False
        declared: Optional[int] = None
        for low, name, value in extra:
            if low == "host" and not h2:
                out[0] = (b"Host", value.encode("latin-1"))
                continue
            if low == "content-length":
                has_len = True
                try:
                    declared = int(value)
                except ValueError:
                    raise LocalProtocolError(f"invalid Content-Length {value[:40]!r}") from None
                if declared < 0:
                    raise LocalProtocolError(f"invalid Content-Length {value[:40]!r}")
            elif low == "transfer-encoding":
                has_te = True
                if h2:
                    continue
            elif h2 and low in ("connection", "keep-alive", "proxy-connection", "upgrade"):
                continue
            try:
                out.append((name.encode("latin-1"), value.encode("latin-1")))
            except UnicodeEncodeError:
                raise LocalProtocolError(f"header {name!r}: value is not latin-1") from None
        ctype = req.extensions.get("content-type")
        if ctype is not None:
            out.append((b"Content-Type", ctype.encode()))
        cookie = req.extensions.get("cookie")     # the jar's (Cookies._apply)
        if cookie is not None:
            out.append((b"Cookie", cookie.encode("latin-1")))
        stream = None
        if req.content is not None:
            if has_te:
                raise LocalProtocolError("Transfer-Encoding set with a bytes body")
            if declared is not None and declared != len(req.content):
                raise LocalProtocolError(f"Content-Length {declared} does not match the "
                                         f"body's {len(req.content)} bytes")
            if not has_len and (req.content or req.method in ("POST", "PUT", "PATCH")):
                out.append((b"Content-Length", str(len(req.content)).encode()))
        elif req.stream is not None:
            chunked = not has_len and not h2
            if chunked and not has_te:
                out.append((b"Transfer-Encoding", b"chunked"))
            stream = _Content(req.stream, chunked, declared)
        elif req.method in ("POST", "PUT", "PATCH") and not has_len:
            out.append((b"Content-Length", b"0"))
        if has_len and has_te:
            raise LocalProtocolError("both Content-Length and Transfer-Encoding set")
        return out, checked, stream

    def _pool(self, url: URL) -> OriginPool:
        key: Any = url.origin
        proxy = None if self._proxies is None else self._proxies.select(key)
        if proxy is not None:
            # https: a tunnel per proxy and origin; http: the proxy's own pool
            key = (proxy.key, key) if url.scheme == "https" else proxy.key
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._new_pool(url, proxy)
        return pool

    def _new_pool(self, url: URL, proxy: Any) -> OriginPool:
        if self._closed:
            raise RuntimeError("the Client is closed")
        if proxy is not None and url.scheme == "http":
            # HTTP/1.1 to the proxy, which forwards absolute-form requests
            return OriginPool(("http", proxy.host, proxy.port), self.limits, self.bounds,
                              None, True, False, None, proxy)
        ctx = None
        if url.scheme == "https":
            if self._ssl is None:
                self._ssl = _ssl_context(self._verify, self.http1, self.http2)
            ctx = self._ssl
        h2f = None
        if self.http2:
            from ._h2conn import open_h2
            h2f = open_h2
        return OriginPool(url.origin, self.limits, self.bounds, ctx, self.http1, self.http2,
                          h2f, proxy)

    # -- sending --

    async def send(self, request: Request, *, stream: bool = False, timeout: Any = _UNSET,
                   follow_redirects: Optional[bool] = None) -> Response:
        t = self.timeout if timeout is _UNSET else (
            timeout if isinstance(timeout, Timeout) else Timeout(timeout))
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        history: List[Response] = []
        while True:
            self._cookies._apply(request, self.headers)
            resp = await self._send_once(request, t, stream)
            self._cookies.extract_cookies(resp)
            if not follow or not resp.is_redirect:
                resp.history = history
                if not stream and resp._stream is not None:
                    try:
                        await resp.aread()
                    finally:
                        await resp.aclose()
                return resp
            await resp.aclose()
            if len(history) >= self.max_redirects:
                raise TooManyRedirects(f"more than {self.max_redirects} redirects "
                                       f"(last: {request.url})")
            history.append(resp)
            request = self._redirect(request, resp)

    def _redirect(self, req: Request, resp: Response) -> Request:
        url = req.url.join(resp.headers["location"])
        method = req.method
        content, stream = req.content, req.stream
        headers = req.headers.copy()
        if resp.status_code == 303 and method != "HEAD" or \
                resp.status_code in (301, 302) and method == "POST":
            method = "GET"
            content = stream = None
            for name in ("content-length", "content-type", "transfer-encoding"):
                headers.pop(name)
        if stream is not None:
            raise RequestError("cannot follow a redirect that needs a streamed body sent again")
        if url.origin != req.url.origin:
            headers.pop("authorization")
        headers.pop("cookie")       # every hop's Cookie is the jar's (as httpx)
        headers.pop("host")
        new = Request(method, url, headers=headers, content=content)
        ct = req.extensions.get("content-type")
        if ct is not None and content is not None:
            new.extensions["content-type"] = ct
        return new

    async def _send_once(self, req: Request, t: Timeout, stream: bool) -> Response:
        """One request on a connection of the pool, again on another (at
        most 3 times in all) when the one it took turns out stale and the
        request can be repeated; once more, whatever the request, when its
        HTTP/2 connection had no stream id left (nothing was sent)."""
        attempts = 0
        moved = False
        while True:
            attempts += 1
            try:
                return await self._attempt(req, t, stream)
            except StreamIdsExhausted:
                # that connection now goes away; a new one has ids
                if moved:
                    raise TransportError(f"{req.method} {req.url}: no HTTP/2 stream id left on "
                                         "a new connection either") from None
                moved = True
                attempts -= 1
                continue
            except StaleConnection as exc:
                if attempts >= 3 or req.stream is not None or (
                        req.method not in _IDEMPOTENT and not exc.safe):
                    raise TransportError(f"{req.method} {req.url}: the connection closed "
                                         "before the server answered") from None
                continue
            except RequestError as exc:
                if exc.request is None:
                    exc.request = req
                raise

    async def _attempt(self, req: Request, t: Timeout, stream: bool) -> Response:
        """The request on one connection (the HTTP/3 client's is its own)."""
        pool = self._pool(req.url)
        # an idle keep-alive connection is taken without a coroutine
        conn: Any = (pool.take_idle() if pool.idle and not pool.h2conns else None) \
            or await pool.connection(t)
        if type(conn) is H1Connection:
            return await self._h1(conn, req, t, stream)
        return await conn.request(self, req, t)

    async def _h1(self, conn: H1Connection, req: Request, t: Timeout, stream: bool) -> Response:
        headers, checked, body = self._wire_headers(req, False)
        expect = len(headers) > checked and any(
            n.lower() == b"expect" and v.lower() == b"100-continue"
            for n, v in headers[checked:])
        target = req.url.target.encode("ascii")
        if conn.pool.forward is not None:   # to a proxy: absolute-form, its credentials
            target, headers = conn.pool.forward.forward(_host_bytes(req.url.netloc), target,
                                                        headers)
        p = await conn.request(req.method.encode("ascii"), target,
                               headers, checked, req.content, body, t, expect)
        if p.done and not stream and (p.content_encoding is None):
            # the whole response arrived with its head: no stream object
            body_bytes = p.body[0] if len(p.body) == 1 else b"".join(p.body)
            trailers = p.trailers
            conn._done(p.keep_alive)
            r = Response(p.status, headers=p.headers, content=body_bytes, request=req,
                         http_version=p.http_version, reason_phrase=p.reason.decode("latin-1"),
                         bounds=self.bounds)
            r._trailers = trailers
            return r
        return Response(p.status, headers=p.headers, request=req, http_version=p.http_version,
                        reason_phrase=p.reason.decode("latin-1"), stream=conn.body(p, t),
                        bounds=self.bounds)

    async def request(self, method: str, url: Union[str, URL], *, content: Any = None,
                      data: Any = None, json: Any = None, params: Any = None,
                      headers: Any = None, cookies: Any = None, timeout: Any = _UNSET,
                      follow_redirects: Optional[bool] = None) -> Response:
        req = self.build_request(method, url, content=content, data=data, json=json,
                                 params=params, headers=headers, cookies=cookies)
        return await self.send(req, timeout=timeout, follow_redirects=follow_redirects)

    def stream(self, method: str, url: Union[str, URL], **kwargs: Any) -> "_StreamCM":
        """``async with client.stream("GET", url) as r: async for chunk in
        r.aiter_bytes(): ...``: the body is read as you iterate."""
        return _StreamCM(self, method, url, kwargs)

    async def get(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("GET", url, **kw)

    async def head(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("HEAD", url, **kw)

    async def options(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("OPTIONS", url, **kw)

    async def delete(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("DELETE", url, **kw)

    async def post(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("POST", url, **kw)

    async def put(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: Union[str, URL], **kw: Any) -> Response:
        return await self.request("PATCH", url, **kw)


def _host_bytes(netloc: str) -> bytes:
    return netloc.encode("ascii") if netloc.isascii() else netloc.encode("idna")


def _pairs(params: Any) -> Any:
    if isinstance(params, dict):
        return params.items()
    if isinstance(params, str):
        from urllib.parse import parse_qsl
        return parse_qsl(params)
    return params


class _StreamCM:
    __slots__ = ("client", "method", "url", "kwargs", "response")

    def __init__(self, client: Client, method: str, url: Any, kwargs: Dict[str, Any]) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.kwargs = kwargs
        self.response: Optional[Response] = None

    async def __aenter__(self) -> Response:
        kw = dict(self.kwargs)
        timeout = kw.pop("timeout", _UNSET)
        follow = kw.pop("follow_redirects", None)
        req = self.client.build_request(self.method, self.url, **kw)
        self.response = await self.client.send(req, stream=True, timeout=timeout,
                                               follow_redirects=follow)
        return self.response

    async def __aexit__(self, *exc: Any) -> None:
        if self.response is not None:
            await self.response.aclose()


# -- module-level one-shot helpers --------------------------------------------

async def request(method: str, url: Union[str, URL], *, timeout: Any = DEFAULT_TIMEOUT,
                  verify: Any = True, http2: bool = False, follow_redirects: bool = False,
                  **kwargs: Any) -> Response:
    """One request on a Client of its own (closed before returning)."""
    async with Client(timeout=timeout, verify=verify, http2=http2,
                      follow_redirects=follow_redirects) as c:
        return await c.request(method, url, **kwargs)


async def get(url: Union[str, URL], **kw: Any) -> Response:
    return await request("GET", url, **kw)


async def head(url: Union[str, URL], **kw: Any) -> Response:
    return await request("HEAD", url, **kw)


async def options(url: Union[str, URL], **kw: Any) -> Response:
    return await request("OPTIONS", url, **kw)


async def delete(url: Union[str, URL], **kw: Any) -> Response:
    return await request("DELETE", url, **kw)


async def post(url: Union[str, URL], **kw: Any) -> Response:
    return await request("POST", url, **kw)


async def put(url: Union[str, URL], **kw: Any) -> Response:
    return await request("PUT", url, **kw)


async def patch(url: Union[str, URL], **kw: Any) -> Response:
    return await request("PATCH", url, **kw)


class stream:  # noqa: N801 - a function-like context manager, named as httpx names it
    """``async with ringline.http.stream("GET", url) as r: ...`` on a Client
    of its own, closed when the block exits."""

    def __init__(self, method: str, url: Union[str, URL], *, timeout: Any = DEFAULT_TIMEOUT,
                 verify: Any = True, http2: bool = False, **kwargs: Any) -> None:
        self._client = Client(timeout=timeout, verify=verify, http2=http2)
        self._cm = self._client.stream(method, url, **kwargs)

    async def __aenter__(self) -> Response:
        try:
            return await self._cm.__aenter__()
        except BaseException:
            await self._client.aclose()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._cm.__aexit__(*exc)
        finally:
            await self._client.aclose()
