"""The values users handle: ``Headers``, ``URL``, ``Request``, ``Response``.

Owns:

* ``Headers``: case-insensitive, multi-valued, order-preserving; built from
  the raw (name, value) bytes pairs a parser produced only when first used.
* ``URL``: an absolute http/https URL split once (scheme, host, port,
  target) with the origin key pools use; ``merge_url`` joins a client's
  base_url and applies ``params``.
* ``Request``: method, URL, headers and content as the connection sends it.
* ``split_status``: an HTTP/2 or HTTP/3 response head's ``:status`` and
  its regular fields (the pseudo headers dropped); ``trailer_error``: the
  error of a trailer section over ``max_trailer_bytes``.
* ``Response``: status, reason, headers, http_version, trailers and the
  body. A response from ``Client.request`` is read already; one from
  ``Client.stream`` owns its connection until the body is read to the end
  or ``aclose()`` is called (then the connection goes back to its pool, or
  is closed if the body was not finished). Decoding (Content-Encoding) is
  applied by ``aiter_bytes`` / ``aread``; ``aiter_raw`` gives the bytes on the
  wire. ``cookies``: the cookies its Set-Cookie fields set (parsed when
  first asked for, by the rules of the client's jar: ``_cookies``).

Invariants: a Response's body is consumed at most once (StreamConsumed);
``aclose()`` is idempotent and always releases the connection exactly once.
"""
from __future__ import annotations

import json as _json
from typing import (Any, AsyncIterator, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)
from urllib.parse import urlencode, urljoin, urlsplit

from ._config import Bounds, DEFAULT_BOUNDS
from ._cookies import Cookies
from ._decode import make_decoder
from ._errors import (HTTPStatusError, LimitExceeded, LocalProtocolError, ResponseNotRead,
                      StreamClosed, StreamConsumed)

__all__ = ["Headers", "URL", "Request", "Response", "merge_url", "split_status",
           "trailer_error"]

HeaderTypes = Union["Headers", Mapping[str, str], Sequence[Tuple[str, str]], None]


def split_status(hdrs: Iterable[Tuple[bytes, bytes]]) -> Tuple[int, List[Tuple[bytes, bytes]]]:
    """The ``:status`` of a decoded HTTP/2 or HTTP/3 head (0 without one)
    and its fields that are not pseudo headers."""
    status = 0
    rest = []
    for k, v in hdrs:
        if k == b":status":
            status = int(v)
        elif k[:1] != b":":
            rest.append((k, v))
    return status, rest


def trailer_error(size: int, bounds: Bounds) -> Optional[LimitExceeded]:
    """``LimitExceeded`` when a trailer section of ``size`` bytes exceeds
    ``bounds.max_trailer_bytes``, else None."""
    if size > bounds.max_trailer_bytes:
        return LimitExceeded("max_trailer_bytes", bounds.max_trailer_bytes, "trailer section")
    return None


def _s(v: Union[str, bytes]) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else v


class Headers:
    """Case-insensitive multi-valued headers (see the module docstring)."""

    __slots__ = ("_raw", "_items", "version")

    def __init__(self, headers: HeaderTypes = None) -> None:
        self.version = 0        # bumped by every change (clients cache encodings)
        self._raw: Optional[List[Tuple[bytes, bytes]]] = None
        self._items: List[Tuple[str, str, str]] = []
        if headers is None:
            return
        if isinstance(headers, Headers):
            self._items = list(headers._list())
            return
        pairs: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
        for k, v in pairs:
            k, v = _s(k), _s(v)
            self._items.append((k.lower(), k, v))

    @classmethod
    def _from_raw(cls, raw: List[Tuple[bytes, bytes]]) -> "Headers":
        h = cls.__new__(cls)
        h.version = 0
        h._raw = raw
        h._items = []
        return h

    def _list(self) -> List[Tuple[str, str, str]]:
        raw = self._raw
        if raw is not None:
            self._raw = None
            items = []
            for k, v in raw:
                ks = k.decode("latin-1")
                items.append((ks.lower(), ks, v.decode("latin-1")))
            self._items = items
        return self._items

    def get(self, name: str, default: Any = None) -> Any:
        name = name.lower()
        vals = [v for k, _, v in self._list() if k == name]
        return ", ".join(vals) if vals else default

    def get_list(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, _, v in self._list() if k == name]

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __setitem__(self, name: str, value: str) -> None:
        low = name.lower()
        items = [t for t in self._list() if t[0] != low]
        items.append((low, name, value))
        self._items = items
        self.version += 1

    def __delitem__(self, name: str) -> None:
        low = name.lower()
        items = [t for t in self._list() if t[0] != low]
        if len(items) == len(self._items):
            raise KeyError(name)
        self._items = items
        self.version += 1

    def setdefault(self, name: str, value: str) -> str:
        cur = self.get(name)
        if cur is None:
            self[name] = value
            return value
        return cur

    def update(self, other: HeaderTypes) -> None:
        for k, v in Headers(other).multi_items():
            self[k] = v

    def add(self, name: str, value: str) -> None:
        self._list().append((name.lower(), name, value))
        self.version += 1

    def pop(self, name: str, default: Any = None) -> Any:
        v = self.get(name, default)
        try:
            del self[name]
        except KeyError:
            pass
        return v

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        low = name.lower()
        return any(k == low for k, _, _ in self._list())

    def keys(self) -> List[str]:
        seen: Dict[str, None] = {}
        for k, _, _ in self._list():
            seen.setdefault(k)
        return list(seen)

    def values(self) -> List[str]:
        return [self.get(k) for k in self.keys()]

    def items(self) -> List[Tuple[str, str]]:
        return [(k, self.get(k)) for k in self.keys()]

    def multi_items(self) -> List[Tuple[str, str]]:
        return [(k, v) for k, _, v in self._list()]

    @property
    def raw(self) -> List[Tuple[bytes, bytes]]:
        if self._raw is not None:
            return list(self._raw)
        return [(n.encode("latin-1"), v.encode("latin-1")) for _, n, v in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __eq__(self, other: object) -> bool:
        try:
            o = Headers(other)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return sorted(self.multi_items()) == sorted(o.multi_items())

    def copy(self) -> "Headers":
        return Headers(self)

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"


class URL:
    """An absolute http(s) URL, split once."""

    __slots__ = ("scheme", "host", "port", "target", "_str", "origin", "userinfo")

    def __init__(self, url: Union[str, "URL"]) -> None:
        if isinstance(url, URL):
            for s in self.__slots__:
                setattr(self, s, getattr(url, s))
            return
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise LocalProtocolError(f"unsupported URL scheme {parts.scheme!r} in {url[:120]!r}"
                                     " (http and https only)")
        host = parts.hostname
        if not host:
            raise LocalProtocolError(f"URL has no host: {url[:120]!r}")
        try:
            port = parts.port
        except ValueError:
            raise LocalProtocolError(f"invalid port in URL {url[:120]!r}") from None
        if port is None:
            port = 443 if scheme == "https" else 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if any(c in target for c in " \r\n\t\x00"):
            raise LocalProtocolError(f"invalid characters in URL path {target[:80]!r}")
        self.scheme = scheme
        self.host = host
        self.port = port
        self.target = target
        self.userinfo = parts.username
        self._str = url.split("#", 1)[0]
        self.origin = (scheme, host, port)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def with_target(self, target: str) -> "URL":
        return URL(f"{self.scheme}://{self.netloc}{target}")

    def join(self, ref: str) -> "URL":
        """Resolve a reference (a redirect's Location) against this URL."""
        return URL(urljoin(self._str, ref))

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"URL({self._str!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._str)


def merge_url(base: Optional[URL], url: Union[str, URL], params: Any = None) -> URL:
    if isinstance(url, URL):
        u = url
    elif base is not None and "://" not in url:
        if not url:
            u = base
        else:
            path = base.path.rstrip("/") + "/" + url.lstrip("/")
            u = base.with_target(path)
    else:
        u = URL(url)
    if params:
        q = urlencode(params, doseq=True)
        u = u.with_target(u.target + ("&" if "?" in u.target else "?") + q)
    return u


class Request:
    """A request as it goes on the wire."""

    __slots__ = ("method", "url", "headers", "content", "stream", "extensions")

    def __init__(self, method: str, url: Union[str, URL], *, headers: HeaderTypes = None,
                 content: Optional[bytes] = None, stream: Any = None) -> None:
        self.method = method.upper()
        self.url = url if isinstance(url, URL) else URL(url)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.content = content
        self.stream = stream
        self.extensions: Dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Request [{self.method} {self.url}]>"


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
            302: "Found", 303: "See Other", 304: "Not Modified",
            307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


class Response:
    """A response (see the module docstring)."""

    __slots__ = ("status_code", "reason_phrase", "_headers", "http_version", "request",
                 "_body", "_content", "_consumed", "_closed", "_bounds", "_trailers",
                 "history", "extensions", "_stream", "_cookies")

    def __init__(self, status_code: int, *, headers: Any = None, content: Optional[bytes] = None,
                 request: Optional[Request] = None, http_version: str = "HTTP/1.1",
                 reason_phrase: Optional[str] = None, stream: Any = None,
                 bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.status_code = status_code
        self.reason_phrase = (reason_phrase if reason_phrase is not None
                              else _REASONS.get(status_code, ""))
        self._headers = headers if isinstance(headers, (Headers, list)) else Headers(headers)
        self.http_version = http_version
        self.request = request
        self._stream = stream
        self._content = content
        self._consumed = content is not None
        self._closed = stream is None
        self._bounds = bounds
        self._trailers: Any = None
        self.history: List["Response"] = []
        self.extensions: Dict[str, Any] = {}
        self._cookies: Optional[Cookies] = None

    # -- head --

    @property
    def headers(self) -> Headers:
        h = self._headers
        if type(h) is list:
            h = self._headers = Headers._from_raw(h)
        return h  # type: ignore[return-value]

    @property
    def trailers(self) -> Headers:
        """Trailer fields (chunked h1, h2); empty until the body was read."""
        t = self._trailers
        if t is None and self._stream is not None:
            t = getattr(self._stream, "trailers", None)
        if t is None:
            return Headers()
        if type(t) is list:
            t = self._trailers = Headers._from_raw(t)
        return t

    @property
    def cookies(self) -> Cookies:
        """The cookies this response's Set-Cookie fields set (those its
        request's URL may set)."""
        c = self._cookies
        if c is None:
            c = self._cookies = Cookies()
            c.extract_cookies(self)
        return c

    @property
    def url(self) -> Optional[URL]:
        return self.request.url if self.request is not None else None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def raise_for_status(self) -> "Response":
        if self.status_code >= 400:
            kind = "Client error" if self.status_code < 500 else "Server error"
            raise HTTPStatusError(f"{kind} '{self.status_code} {self.reason_phrase}' for url "
                                  f"'{self.url}'", request=self.request, response=self)
        return self

    # -- body --

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise ResponseNotRead()
        return self._content

    @property
    def encoding(self) -> str:
        ct = self.headers.get("content-type", "")
        for part in ct.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                return v.strip('"\'')
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self, **kwargs: Any) -> Any:
        return _json.loads(self.content, **kwargs)

    async def aread(self) -> bytes:
        if self._content is None:
            chunks = [c async for c in self.aiter_bytes()]
            self._content = b"".join(chunks)
        return self._content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body bytes as received (chunked framing removed, no decoding)."""
        if self._consumed:
            raise StreamConsumed("the response body was already read")
        if self._closed:
            raise StreamClosed("the response was closed before its body was read")
        self._consumed = True
        stream = self._stream
        try:
            while True:
                data = await stream.read()
                if data is None:
                    break
                if data:
                    yield data
        finally:
            self._trailers = getattr(stream, "trailers", None)
            await self.aclose()

    async def aiter_bytes(self, chunk_size: Optional[int] = None) -> AsyncIterator[bytes]:
        """The body, decoded per Content-Encoding (within the decode bounds)."""
        if self._content is not None:
            c = self._content
            step = chunk_size or max(len(c), 1)
            for i in range(0, len(c), step):
                yield c[i:i + step]
            return
        b = self._bounds
        dec = make_decoder(self.headers.get("content-encoding"), b.max_decoded_bytes,
                           b.max_decode_ratio)
        buf = b""
        async for raw in self.aiter_raw():
            data = dec.decode(raw) if dec is not None else raw
            if chunk_size is None:
                if data:
                    yield data
                continue
            buf += data
            while len(buf) >= chunk_size:
                yield buf[:chunk_size]
                buf = buf[chunk_size:]
        if dec is not None:
            tail = dec.flush()
            if chunk_size is None:
                if tail:
                    yield tail
            else:
                buf += tail
        if buf:
            for i in range(0, len(buf), chunk_size or len(buf)):
                yield buf[i:i + (chunk_size or len(buf))]

    async def aiter_text(self) -> AsyncIterator[str]:
        import codecs
        dec = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        async for chunk in self.aiter_bytes():
            s = dec.decode(chunk)
            if s:
                yield s
        s = dec.decode(b"", final=True)
        if s:
            yield s

    async def aiter_lines(self) -> AsyncIterator[str]:
        pending = ""
        async for text in self.aiter_text():
            pending += text
            lines = pending.splitlines(keepends=True)
            pending = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
            for line in lines:
                yield line.rstrip("\r\n")
        if pending:
            yield pending

    async def aclose(self) -> None:
        """Release the connection (closing it when the body was not read to
        the end). Idempotent."""
        if self._closed:
            return
        self._closed = True
        stream = self._stream
        if stream is not None:
            stream.release()

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"
