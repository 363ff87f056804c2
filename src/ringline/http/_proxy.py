"""HTTP proxies for ringline.http: which proxy a URL goes through, and the
CONNECT tunnel an https:// URL goes through it by.

Owns:

* ``Proxy``: one ``http://[user:password@]host[:port]`` proxy, parsed once:
  the address to dial, a name for messages (never with the credentials),
  the ``Proxy-Authorization: Basic`` field its credentials make, and the
  key its pools are filed under; ``forward()`` turns a plain-http request
  into the absolute-form one a proxy forwards (``GET http://host/path``,
  with the credentials).
* ``ProxyRoutes`` / ``routes(proxy, trust_env)``: the choice, made once per
  origin (cached, bounded): ``Client(proxy=...)`` sends every request
  through that proxy (environment ignored, as httpx does); otherwise, with
  ``trust_env``, HTTP_PROXY (http:// URLs), HTTPS_PROXY (https:// URLs) and
  ALL_PROXY (either), lower case winning over upper case, and NO_PROXY
  (comma-separated: ``*`` for every host, a host name that also matches its
  subdomains, a leading ``.`` or ``*.`` ignored, an IP address matched as
  written, an optional ``:port`` and ``scheme://``). HTTP_PROXY in upper
  case is ignored when REQUEST_METHOD is set (a CGI program: "httpoxy").
* ``open_tunnel(...)``: dial the proxy, ``CONNECT host:port``, read its
  answer, then the TLS handshake with the origin inside the tunnel
  (``wrap_client_tls``, ALPN as without a proxy). The proxy's answer head
  is parsed by ``_h1.ResponseParser`` and bounded by ``max_header_bytes``;
  connect, CONNECT and handshake together by ``Timeout.connect``.

Lifecycle: a Client builds its ``ProxyRoutes`` once, in its constructor
(the environment is read then, not per request); pools keep the ``Proxy``
their connections go through. A tunnel either comes back as an open
TlsConn, or its connection is closed before the error is raised.

Invariants: a proxy's credentials appear only in the Proxy-Authorization
field sent to that proxy, never in a message or a pool key's printable
name; nothing a proxy sends is buffered past ``max_header_bytes`` before
the tunnel is up; a failed CONNECT never leaves its connection open.
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import ssl
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from .._conn import api as _api
from .._conn import tls as _tls
from .._conn.timers import timeout_at
from .._errors import ConnectionClosed, ConnectionDropped
from ._config import Bounds
from ._errors import ConnectTimeout, LimitExceeded, ProxyError, RemoteProtocolError
from ._h1 import ResponseParser, encode_head
from ._models import URL

__all__ = ["Proxy", "ProxyRoutes", "routes", "parse_no_proxy", "authority", "open_tunnel"]

Origin = Tuple[str, str, int]
# an entry of NO_PROXY: (scheme or None, host, port or None)
Bypass = Tuple[Optional[str], str, Optional[int]]

_CHOICES_KEPT = 512       # origins whose choice is remembered (then forgotten, all)


def authority(host: str, port: int) -> bytes:
    """``host:port`` as a CONNECT target (IPv6 in brackets, IDNA)."""
    h = f"[{host}]" if ":" in host else host
    return f"{h}:{port}".encode("ascii" if h.isascii() else "idna")


class Proxy:
    """One HTTP proxy (see the module docstring)."""

    __slots__ = ("host", "port", "name", "auth", "key")

    def __init__(self, url: Any, source: str = "proxy") -> None:
        if isinstance(url, URL):
            url = str(url)
        if not isinstance(url, str):
            raise TypeError(f"{source} must be a str URL such as 'http://127.0.0.1:3128', "
                            f"got {type(url).__name__}")
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        if scheme != "http":
            raise ValueError(f"{source}: unsupported proxy URL {shown[:120]!r}: only http:// "
                             "proxies are supported (not https:// or socks)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{source}: invalid port in proxy URL {shown[:120]!r}") from None
        if not parts.hostname:
            raise ValueError(f"{source}: proxy URL {shown[:120]!r} has no host")
        self.host = parts.hostname
        self.port = port if port is not None else 80
        h = f"[{self.host}]" if ":" in self.host else self.host
        self.name = f"http://{h}:{self.port}"
        self.auth: Optional[Tuple[bytes, bytes]] = None
        if parts.username is not None or parts.password is not None:
            user = unquote(parts.username or "")
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode("utf-8"))
            self.auth = (b"Proxy-Authorization", b"Basic " + token)
        self.key = (self.name, self.auth)

    def forward(self, netloc: bytes, target: bytes,
                headers: List[Tuple[bytes, bytes]]) -> Tuple[bytes, List[Tuple[bytes, bytes]]]:
        """A plain-http request as the proxy takes it: the absolute-form
        target and the header list with this proxy's credentials (a new
        list; the caller's may be a shared cache)."""
        if self.auth is not None:
            headers = headers + [self.auth]
        return b"http://" + netloc + target, headers

    def __repr__(self) -> str:
        return f"<Proxy {self.name}{' with credentials' if self.auth else ''}>"


def _bypassed(origin: Origin, entries: Tuple[Bypass, ...]) -> bool:
    scheme, host, port = origin
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    for e_scheme, e_host, e_port in entries:
        if e_scheme is not None and e_scheme != scheme:
            continue
        if e_port is not None and e_port != port:
            continue
        if host == e_host or (not literal and host.endswith("." + e_host)):
            return True
    return False


def parse_no_proxy(value: str) -> Optional[Tuple[Bypass, ...]]:
    """NO_PROXY's entries; None when it is ``*`` (no host goes through a
    proxy)."""
    out: List[Bypass] = []
    for item in value.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "*":
            return None
        scheme: Optional[str] = None
        if "://" in item:
            scheme, _, item = item.partition("://")
        item = item.rstrip("/")
        port: Optional[int] = None
        if item.startswith("["):                    # [v6] or [v6]:port
            host, _, rest = item[1:].partition("]")
            if rest[:1] == ":" and rest[1:].isdigit():
                port = int(rest[1:])
        elif item.count(":") == 1:                  # host:port
            host, _, p = item.partition(":")
            if p.isdigit():
                port = int(p)
        else:                                       # a host, or a bare v6 address
            host = item
        host = host.lstrip("*").lstrip(".").rstrip(".")
        if host:
            out.append((scheme, host, port))
    return tuple(out)


class ProxyRoutes:
    """Which proxy (or none) each origin's requests go through."""

    __slots__ = ("http", "https", "bypass", "_chosen")

    def __init__(self, http: Optional[Proxy], https: Optional[Proxy],
                 bypass: Tuple[Bypass, ...] = ()) -> None:
        self.http = http
        self.https = https
        self.bypass = bypass
        self._chosen: Dict[Origin, Optional[Proxy]] = {}

    def select(self, origin: Origin) -> Optional[Proxy]:
        chosen = self._chosen
        try:
            return chosen[origin]
        except KeyError:
            pass
        proxy = self.http if origin[0] == "http" else self.https
        if proxy is not None and self.bypass and _bypassed(origin, self.bypass):
            proxy = None
        if len(chosen) >= _CHOICES_KEPT:
            chosen.clear()
        chosen[origin] = proxy
        return proxy


def _env(environ: Mapping[str, str], name: str) -> Tuple[str, str]:
    """(the variable's name as set, its value) for name in lower case, else
    in upper case; ("", "") when neither is set (or set empty)."""
    for var in (name, name.upper()):
        if var == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            continue            # a CGI program: HTTP_PROXY may come from a request header
        value = environ.get(var)
        if value is not None:
            value = value.strip()
            return (var, value) if value else ("", "")
    return ("", "")


def _env_proxy(environ: Mapping[str, str], name: str,
               fallback: Tuple[str, str]) -> Optional[Proxy]:
    var, value = _env(environ, name)
    if not value:
        var, value = fallback
    if not value:
        return None
    if "://" not in value:
        value = "http://" + value       # HTTP_PROXY=host:port, as curl and httpx read it
    return Proxy(value, var)


def routes(proxy: Any, trust_env: bool,
           environ: Optional[Mapping[str, str]] = None) -> Optional[ProxyRoutes]:
    """The routes of a Client: None when no request goes through a proxy
    (the common case costs one attribute test per request)."""
    if proxy is not None:
        p = proxy if isinstance(proxy, Proxy) else Proxy(proxy)
        return ProxyRoutes(p, p)
    if not trust_env:
        return None
    env = os.environ if environ is None else environ
    everything = _env(env, "all_proxy")
    http = _env_proxy(env, "http_proxy", everything)
    https = _env_proxy(env, "https_proxy", everything)
    if http is None and https is None:
        return None
    bypass = parse_no_proxy(_env(env, "no_proxy")[1])
    if bypass is None:
        return None
    return ProxyRoutes(http, https, bypass)


# -- the CONNECT tunnel -----------------------------------------------------------


async def _connect_exchange(raw: Any, proxy: Proxy, target: bytes, bounds: Bounds,
                            deadline: Optional[float], timeout: Optional[float]) -> None:
    """Send ``CONNECT target`` and read the proxy's answer head; returns
    when it is 2xx (the tunnel is open), raises otherwise."""
    what = f"CONNECT {target.decode('ascii', 'replace')}"
    headers = [(b"Host", target)]
    if proxy.auth is not None:
        headers.append(proxy.auth)
    p = ResponseParser(bounds, head=True)
    eof = False
    try:
        raw.send_nowait(encode_head(b"CONNECT", target, headers))
        async with timeout_at(deadline):
            while not p.head_done:
                if await raw.with_data(p.feed) == 0:
                    eof = True
                    p.feed_eof()
    except TimeoutError:
        raise ConnectTimeout(f"proxy {proxy.name} did not answer {what} within "
                             f"{timeout} s (the connect timeout)") from None
    except LimitExceeded as exc:
        raise ProxyError(f"proxy {proxy.name}: its answer to {what} exceeds "
                         f"{exc.knob}={exc.limit}") from None
    except RemoteProtocolError as exc:
        if not eof:
            raise ProxyError(f"proxy {proxy.name}: invalid answer to {what}: {exc}") from None
        partly = p._started or p.interim or raw.buffered
        raise ProxyError(f"proxy {proxy.name} closed the connection "
                         f"{'in its answer to' if partly else 'without answering'} "
                         f"{what}") from None
    except (ConnectionClosed, ConnectionDropped, OSError) as exc:
        raise ProxyError(f"proxy {proxy.name}: the connection failed during {what}: "
                         f"{exc}") from None
    if not 200 <= p.status < 300:
        reason = p.reason.decode("latin-1")[:200]
        raise ProxyError(f"proxy {proxy.name} refused {what}: {p.status} {reason}".rstrip())


async def open_tunnel(proxy: Proxy, origin: Origin, ssl_context: ssl.SSLContext,
                      bounds: Bounds, timeout: Optional[float]) -> Any:
    """A TLS connection to origin through proxy (see the module docstring).
    Raises OSError or TimeoutError from dialing the proxy, ProxyError or
    ConnectTimeout from the CONNECT exchange, ssl.SSLError or TimeoutError
    from the handshake; the connection is closed on every failure."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    raw = await _api.connect((proxy.host, proxy.port), timeout=timeout)
    try:
        await _connect_exchange(raw, proxy, authority(origin[1], origin[2]), bounds,
                                deadline, timeout)
    except BaseException:
        raw.abort()
        raise
    left = None if deadline is None else max(0.0, deadline - loop.time())
    return await _tls.wrap_client_tls(raw, ssl_context, server_hostname=origin[1],
                                      timeout=left)
