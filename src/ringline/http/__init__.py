"""ringline.http: an HTTP/1.1 and HTTP/2 client on ringline's native
connections, shaped like httpx's AsyncClient.

    async with ringline.http.Client(base_url="http://127.0.0.1:8080") as c:
        r = await c.get("/items", params={"page": 2})
        r.raise_for_status()
        print(r.status_code, r.headers["content-type"], r.json())

Layout: ``_h1`` (sans-IO HTTP/1.1: request heads, the bounded response
parser on httptools), ``_h2conn`` (HTTP/2 on the sans-IO ``h2`` library:
one connection's streams, flow control, GOAWAY, flood bounds),
``_decode`` (Content-Encoding with caps), ``_models`` (Headers, URL,
Request, Response), ``_config`` (Timeout, Limits, Bounds), ``_h1conn``
(one HTTP/1.1 connection over a Conn), ``_pool`` (per-origin pools,
dialing, ALPN), ``_proxy`` (HTTP proxies: which one a URL takes, the
CONNECT tunnel), ``_client`` (Client and the one-shot helpers). See
docs/http.md.

Cookies: ``_cookies`` (``Cookies``, the jar ``Client.cookies`` is: on
http.cookiejar, with its RFC 6265 rules made stricter and its bounds).

It needs a ringline event loop (a ``ringline.serve`` worker, or
``asyncio.Runner(loop_factory=ringline.new_event_loop)`` /
``ringline.run``); httptools (HTTP/1.1) and h2 (HTTP/2, imported only
when ``http2=True``) must be installed: ``pip install ringline[http]``.
"""
from ._client import (Client, delete, get, head, options, patch, post, put, request,
                      stream)
from ._config import Bounds, Limits, Timeout
from ._cookies import CookieConflict, Cookies
from ._errors import (ConnectError, ConnectTimeout, DecodingError, HTTPError, HTTPStatusError,
                      LimitExceeded, LocalProtocolError, NetworkError, PoolTimeout,
                      ProtocolError, ProxyError, ReadError, ReadTimeout, RemoteProtocolError,
                      RequestError, ResponseNotRead, StreamClosed, StreamConsumed,
                      StreamError, TimeoutException, TooManyRedirects, TransportError,
                      WriteError, WriteTimeout)
from ._models import URL, Headers, Request, Response

__all__ = ["Client", "request", "get", "post", "put", "patch", "delete", "head", "options",
           "stream", "Timeout", "Limits", "Bounds", "Headers", "URL", "Request", "Response",
           "Cookies", "CookieConflict",
           "HTTPError", "RequestError", "TransportError", "TimeoutException",
           "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "NetworkError",
           "ConnectError", "ReadError", "WriteError", "ProxyError", "ProtocolError",
           "RemoteProtocolError", "LimitExceeded", "LocalProtocolError", "DecodingError",
           "TooManyRedirects", "HTTPStatusError", "StreamError", "StreamConsumed", "StreamClosed",
           "ResponseNotRead"]
