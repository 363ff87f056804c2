"""Redis connection options: the `Options` record and its URL form.

Owns: `Options` (every knob of a connection: address, auth, protocol,
timeouts, TLS, parser limits, fire/recv bound, push callback, parser choice,
reconnect), `options_from_url` (``redis://``, ``rediss://``, ``unix://``) and
`_make_options` (the host/port/url argument rules of the ``connect``
functions).

Lifecycle: an `Options` is built once per client (or per node of a pool or
cluster) and never changed afterwards; `replace()` makes a modified copy.

Invariants: an `Options` is always valid: the constructor rejects a bad
protocol, parser choice, bound or timeout, and builds one `Parser` to check
the parser limits, so a connection never starts with limits its parser would
refuse.
"""
from __future__ import annotations

import ssl as _ssl
from typing import Any, Callable, Dict, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from ._resp import (DEFAULT_MAX_BIGNUM_DIGITS, DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH,
                    DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY_BYTES,
                    DEFAULT_ZERO_COPY_MIN, Parser, Push)

__all__ = ["Options", "options_from_url"]


class Options:
    """Connection options (see ``connect``'s docstring for each)."""

    __slots__ = ("host", "port", "path", "db", "username", "password", "protocol",
                 "client_name", "connect_timeout", "command_timeout", "ssl",
                 "server_hostname", "max_depth", "max_bulk", "max_elements", "max_line",
                 "max_reply_bytes", "max_bignum_digits",
                 "zero_copy_min", "max_in_flight", "on_push", "parser", "reconnect")

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, *,
                 path: Optional[str] = None, db: int = 0,
                 username: Optional[str] = None, password: Optional[str] = None,
                 protocol: int = 2, client_name: Optional[str] = None,
                 connect_timeout: Optional[float] = 10.0,
                 command_timeout: Optional[float] = None,
                 ssl: Any = None, server_hostname: Optional[str] = None,
                 max_depth: int = DEFAULT_MAX_DEPTH, max_bulk: int = DEFAULT_MAX_BULK,
                 max_elements: int = DEFAULT_MAX_ELEMENTS, max_line: int = DEFAULT_MAX_LINE,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                 max_bignum_digits: int = DEFAULT_MAX_BIGNUM_DIGITS,
                 zero_copy_min: int = DEFAULT_ZERO_COPY_MIN, max_in_flight: int = 10_000,
                 on_push: Optional[Callable[[Push], Any]] = None,
                 parser: str = "auto", reconnect: bool = True) -> None:
        if protocol not in (2, 3):
            raise ValueError(f"protocol must be 2 or 3, got {protocol!r}")
        if parser not in ("auto", "python", "hiredis"):
            raise ValueError(f"parser must be 'auto', 'python' or 'hiredis', got {parser!r}")
        if parser == "hiredis" and protocol == 3:
            raise ValueError("parser='hiredis' supports protocol=2 only (it cannot tell "
                             "RESP3 attributes from replies)")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive int, got {max_in_flight!r}")
        for name, t in (("connect_timeout", connect_timeout),
                        ("command_timeout", command_timeout)):
            if t is not None and (not isinstance(t, (int, float)) or t <= 0):
                raise ValueError(f"{name} must be a positive number or None, got {t!r}")
        self.host = host
        self.port = int(port)
        self.path = path
        self.db = int(db)
        self.username = username
        self.password = password
        self.protocol = protocol
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        if ssl is True:
            ssl = _ssl.create_default_context()
        self.ssl = ssl or None
        self.server_hostname = server_hostname
        self.max_depth = max_depth
        self.max_bulk = max_bulk
        self.max_elements = max_elements
        self.max_line = max_line
        self.max_reply_bytes = max_reply_bytes
        self.max_bignum_digits = max_bignum_digits
        self.zero_copy_min = zero_copy_min
        self.max_in_flight = max_in_flight
        self.on_push = on_push
        self.parser = parser
        self.reconnect = reconnect
        self._parser()                  # validates the limits

    def _parser(self) -> Parser:
        """A reply parser with these options' limits."""
        return Parser(max_depth=self.max_depth, max_bulk=self.max_bulk,
                      max_elements=self.max_elements, max_line=self.max_line,
                      zero_copy_min=self.zero_copy_min, max_reply_bytes=self.max_reply_bytes,
                      max_bignum_digits=self.max_bignum_digits)

    @property
    def address_text(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"{self.host}:{self.port}"

    def replace(self, **changes: Any) -> "Options":
        kw = {name: getattr(self, name) for name in self.__slots__}
        kw.update(changes)
        host, port = kw.pop("host"), kw.pop("port")
        return Options(host, port, **kw)


_URL_INTS = ("db", "protocol", "max_in_flight", "zero_copy_min", "max_depth", "max_bulk",
             "max_elements", "max_line", "max_reply_bytes", "max_bignum_digits")
_URL_FLOATS = ("connect_timeout", "command_timeout", "socket_timeout",
               "socket_connect_timeout")


def options_from_url(url: str, **overrides: Any) -> Options:
    """Options from redis://[[user]:password@]host[:port][/db][?k=v...],
    rediss://... (TLS) or unix:///path[?db=n]. Keyword overrides win."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (redis, rediss or unix)")
    kw: Dict[str, Any] = {}
    if parts.username:
        kw["username"] = unquote(parts.username)
    if parts.password is not None:
        kw["password"] = unquote(parts.password)
    if kw.get("username") is not None and "password" not in kw:
        # redis://password@host is the legacy form of a password without user
        kw["password"], kw["username"] = kw["username"], None
    if scheme == "unix":
        kw["path"] = unquote(parts.path)
    else:
        kw["host"] = parts.hostname or "127.0.0.1"
        kw["port"] = parts.port or 6379
        db = parts.path.lstrip("/")
        if db:
            kw["db"] = int(db)
    for name, values in parse_qs(parts.query).items():
        value = values[-1]
        if name in _URL_INTS:
            kw[name] = int(value)
        elif name in _URL_FLOATS:
            target = {"socket_timeout": "command_timeout",
                      "socket_connect_timeout": "connect_timeout"}.get(name, name)
            kw[target] = float(value)
        elif name in ("client_name", "name"):
            kw["client_name"] = value
        elif name == "ssl_cert_reqs" or name == "ssl_ca_certs" or name == "ssl_check_hostname":
            kw.setdefault("_ssl", {})[name] = value
        else:
            raise ValueError(f"unknown URL option {name!r}")
    ssl_opts = kw.pop("_ssl", {})
    if scheme == "rediss":
        ctx = _ssl.create_default_context(cafile=ssl_opts.get("ssl_ca_certs"))
        reqs = ssl_opts.get("ssl_cert_reqs", "required").lower()
        if reqs in ("none", "optional"):
            ctx.check_hostname = False
            ctx.verify_mode = _ssl.CERT_NONE if reqs == "none" else _ssl.CERT_OPTIONAL
        elif ssl_opts.get("ssl_check_hostname", "true").lower() in ("false", "0", "no"):
            ctx.check_hostname = False
        kw["ssl"] = ctx
    kw.update(overrides)
    host = kw.pop("host", "127.0.0.1")
    port = kw.pop("port", 6379)
    return Options(host, port, **kw)


def _make_options(host: Optional[str], port: Optional[int], url: Optional[str],
                  options: Dict[str, Any]) -> Options:
    if url is not None:
        if host is not None or port is not None:
            raise TypeError("pass either url or host/port, not both")
        return options_from_url(url, **options)
    if host is not None and "://" in host:
        return options_from_url(host, **options)
    return Options(host or "127.0.0.1", 6379 if port is None else port, **options)
