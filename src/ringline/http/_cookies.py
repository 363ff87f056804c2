"""Cookies for ringline.http: ``Cookies`` (httpx's cookie jar API over the
standard library's ``http.cookiejar``) and the two hooks the Client calls.

Owns: the cookie store of a Client and its bounds; which ``Set-Cookie``
fields of a response are stored and the ``Cookie`` header a request gets.
Parsing, domain and path matching, expiry (Expires, Max-Age, deletion by
an expiry in the past) are ``http.cookiejar``'s (``DefaultCookiePolicy``,
Netscape / RFC 6265 cookies, no RFC 2965), made stricter here:

* a cookie set without a Domain attribute goes back to exactly the host
  that set it (the stdlib default also sends it to that host's
  subdomains): ``DomainStrictNonDomain``; a Domain like ``.co.uk`` (a
  country code's second level) is refused: ``strict_domain`` (there is no
  public suffix list: ``Domain=github.io`` from a.github.io is accepted,
  as by httpx);
* on a host that is an IP address, a Domain attribute other than the
  address itself is refused (RFC 6265 5.1.3 suffix-matches host names
  only; the stdlib would accept ``Domain=0.0.1`` from 127.0.0.1 and send
  the cookie to 10.0.0.1);
* a ``Secure`` cookie from an http:// response is refused, and an http://
  response can neither replace nor delete a Secure cookie (RFC 6265bis);
  Secure cookies are sent over https only (the stdlib's rule);
* a cookie whose name or value holds a control character (RFC 6265bis), or
  whose name and value exceed ``max_cookie_bytes``, is refused, and a
  ``Set-Cookie`` field longer than twice that is not parsed at all.

A cookie set through the API without a domain (``Client(cookies={...})``,
``client.cookies["a"] = "1"``) goes to every host, as in httpx.

Lifecycle: a Client makes its ``Cookies`` from ``cookies=``; before each
hop of a request (the first and each redirect) ``_apply`` puts the header
for that hop's URL in ``request.extensions["cookie"]`` (from the jar and
the request's own ``cookies=``, kept in ``request.extensions["cookies"]``),
unless the request or the client's headers set ``Cookie`` (that wins, as in
httpx); after each response, redirects included, ``extract_cookies``
stores what it set.

Invariants: at most ``max_per_domain`` cookies per domain (a Domain
attribute's domain and the hosts under it count as one) and ``max_total``
in all; a cookie past a bound drops the one set (or last replaced) longest
ago, never an error. A peer's ``Set-Cookie`` never raises, and a field
the stdlib cannot parse costs only its own cookie (each field is parsed
alone; a valueless Max-Age, on which http.cookiejar raises, is dropped as
RFC 6265 5.2.2 says). The stdlib's nested dicts hold no empty levels (a
server inventing paths cannot grow them). Nothing here does I/O. A Client and its jar belong to one loop (the
stdlib's lock is kept, nothing more).
"""
from __future__ import annotations

import ipaddress
import re
import threading
import urllib.request
from collections import OrderedDict
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import (TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, MutableMapping,
                    Optional, Tuple)
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._models import URL, Headers, Request, Response

__all__ = ["Cookies", "CookieConflict", "MAX_PER_DOMAIN", "MAX_TOTAL", "MAX_COOKIE_BYTES"]

MAX_PER_DOMAIN = 50         # browsers keep 50 to 180 per domain
MAX_TOTAL = 3000            # Chrome's total
MAX_COOKIE_BYTES = 4096     # name + value, RFC 6265 6.1 and browsers

_Key = Tuple[str, str, str]                     # (domain, path, name), http.cookiejar's keys
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but HTAB


class CookieConflict(Exception):
    """``Cookies.get(name)`` (or ``cookies[name]``) matched more than one
    cookie: name the one you mean with ``domain=`` / ``path=``."""


def _problem(name: str, value: Optional[str], max_bytes: int) -> Optional[str]:
    """Why a cookie may not be stored, or None."""
    v = value or ""
    if len(name) + len(v) > max_bytes:
        return f"its name and value exceed max_cookie_bytes ({max_bytes})"
    if _CTL.search(name) or _CTL.search(v):
        return "it contains a control character"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _group(domain: str) -> str:
    """The domain a cookie counts against (".example.com" and "example.com"
    are one)."""
    return domain.lstrip(".")


def _urllib_request(url: "URL") -> urllib.request.Request:
    """What http.cookiejar reads of a request (no userinfo, no fragment)."""
    return urllib.request.Request(f"{url.scheme}://{url.netloc}{url.target}")


def _fixed(field: str) -> str:
    """``field`` without a valueless Max-Age attribute (RFC 6265 5.2.2
    ignores it; http.cookiejar raises TypeError on it)."""
    if "max-age" not in field.lower():
        return field
    return ";".join(p for p in field.split(";") if p.strip().lower() != "max-age")


def _set_cookie_fields(response: "Response") -> List[str]:
    """The response's Set-Cookie field values, read from the raw header
    list when the headers were not decoded yet (a response without any
    costs a scan of its field names, no decoding)."""
    h: Any = response._headers
    raw = h if type(h) is list else h._raw
    if raw is None:
        return list(h.get_list("set-cookie"))
    return [v.decode("latin-1") for k, v in raw if len(k) == 10 and k.lower() == b"set-cookie"]


class _SetCookieFields:
    """What http.cookiejar reads of a response: ``info().get_all(name)``."""

    __slots__ = ("fields",)

    def __init__(self, fields: List[str]) -> None:
        self.fields = fields

    def info(self) -> "_SetCookieFields":
        return self

    def get_all(self, name: str, default: Any = None) -> Any:
        return self.fields if name.lower() == "set-cookie" else default


class _Policy(DefaultCookiePolicy):
    """DefaultCookiePolicy made stricter (see the module docstring)."""

    def __init__(self, max_cookie_bytes: int) -> None:
        super().__init__(strict_domain=True,
                         strict_ns_domain=DefaultCookiePolicy.DomainStrictNonDomain)
        self.max_cookie_bytes = max_cookie_bytes

    def set_ok(self, cookie: Cookie, request: Any) -> bool:
        if _problem(cookie.name, cookie.value, self.max_cookie_bytes) is not None:
            return False
        if cookie.secure and request.type != "https":
            return False
        return bool(super().set_ok(cookie, request))

    def set_ok_domain(self, cookie: Cookie, request: Any) -> bool:
        if cookie.domain_specified:
            host = urlsplit(request.get_full_url()).hostname or ""
            if _is_ip(host) and _group(cookie.domain) != host:
                return False
        return bool(super().set_ok_domain(cookie, request))

    def return_ok_domain(self, cookie: Cookie, request: Any) -> bool:
        # set through the API without a domain: every host (as httpx)
        return not cookie.domain or bool(super().return_ok_domain(cookie, request))


class _Jar(CookieJar):
    """A CookieJar within ``max_per_domain`` and ``max_total`` cookies; it
    iterates its cookies in the order they were set, oldest first."""

    # CookieJar's own (domain -> path -> name -> Cookie) and lock, kept in step
    _cookies: Dict[str, Dict[str, Dict[str, Cookie]]]
    _cookies_lock: threading.RLock

    def __init__(self, policy: _Policy, max_per_domain: int, max_total: int) -> None:
        super().__init__(policy)
        self.policy = policy
        self.max_per_domain = max_per_domain
        self.max_total = max_total
        self._age: "OrderedDict[_Key, None]" = OrderedDict()          # every cookie
        self._domains: Dict[str, "OrderedDict[_Key, None]"] = {}      # by _group
        self._keep_secure = False       # while an http response's cookies are made

    def extract_cookies(self, response: Any, request: Any) -> None:
        """As CookieJar.extract_cookies; besides, a response over http
        neither replaces nor deletes a Secure cookie (RFC 6265bis): no
        cookie without Secure of the same name, whose domain domain-matches
        the Secure one's (or the reverse), on a path under its path."""
        insecure = request.type != "https"
        with self._cookies_lock:
            self._keep_secure = insecure
            try:
                cookies = self.make_cookies(response, request)     # deletes expired ones
            finally:
                self._keep_secure = False
            for cookie in cookies:
                if self.policy.set_ok(cookie, request) and not (
                        insecure and self._shadows_secure(cookie)):
                    self.set_cookie(cookie)

    def _shadows_secure(self, new: Cookie) -> bool:
        d = _group(new.domain)
        for old in self:
            if old.secure and old.name == new.name:
                o = _group(old.domain)
                if (d == o or d.endswith("." + o) or o.endswith("." + d)) and (
                        new.path == old.path or new.path.startswith(old.path) and (
                            old.path.endswith("/") or new.path[len(old.path)] == "/")):
                    return True
        return False

    def set_cookie(self, cookie: Cookie) -> None:
        key = (cookie.domain, cookie.path, cookie.name)
        with self._cookies_lock:
            super().set_cookie(cookie)
            self._age.pop(key, None)
            self._age[key] = None
            group = self._domains.setdefault(_group(cookie.domain), OrderedDict())
            group.pop(key, None)
            group[key] = None
            while len(group) > self.max_per_domain:
                self.clear(*next(iter(group)))
            while len(self._age) > self.max_total:
                self.clear(*next(iter(self._age)))

    def clear(self, domain: Optional[str] = None, path: Optional[str] = None,
              name: Optional[str] = None) -> None:
        """As CookieJar.clear (KeyError when nothing matches), keeping the
        age order and pruning emptied levels."""
        with self._cookies_lock:
            if self._keep_secure and name is not None and path is not None and domain:
                old = self._cookies.get(domain, {}).get(path, {}).get(name)
                if old is not None and old.secure:
                    raise KeyError(name)    # not by an http response (extract_cookies)
            super().clear(domain, path, name)
            if domain is None:
                self._age.clear()
                self._domains.clear()
                return
            group = self._domains.get(_group(domain))
            if group is not None:
                gone = [k for k in group if k[0] == domain and path in (None, k[1])
                        and name in (None, k[2])]
                for key in gone:
                    self._age.pop(key, None)
                    group.pop(key, None)
                if not group:
                    del self._domains[_group(domain)]
            paths = self._cookies.get(domain)
            if paths is not None:
                if path is not None and not paths.get(path, True):
                    del paths[path]
                if not paths:
                    del self._cookies[domain]

    def __iter__(self) -> Iterator[Cookie]:
        c = self._cookies
        return iter([c[d][p][n] for d, p, n in self._age])

    def __len__(self) -> int:
        return len(self._age)


def _limit(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class Cookies(MutableMapping[str, str]):
    """A cookie jar with httpx's ``Cookies`` API (see the module docstring).

    ``Cookies(cookies=None, *, max_per_domain=50, max_total=3000,
    max_cookie_bytes=4096)``: ``cookies`` is a dict, a list of (name, value)
    pairs, another ``Cookies`` (its bounds are kept unless given here) or
    an ``http.cookiejar.CookieJar``. ``jar`` is the underlying CookieJar.
    """

    jar: _Jar

    def __init__(self, cookies: Any = None, *, max_per_domain: Optional[int] = None,
                 max_total: Optional[int] = None,
                 max_cookie_bytes: Optional[int] = None) -> None:
        src = cookies.jar if isinstance(cookies, Cookies) else None
        per, total, size = ((src.max_per_domain, src.max_total, src.policy.max_cookie_bytes)
                            if src is not None else (MAX_PER_DOMAIN, MAX_TOTAL, MAX_COOKIE_BYTES))
        per = per if max_per_domain is None else max_per_domain
        total = total if max_total is None else max_total
        size = size if max_cookie_bytes is None else max_cookie_bytes
        self.jar = _Jar(_Policy(_limit("max_cookie_bytes", size)),
                        _limit("max_per_domain", per), _limit("max_total", total))
        self.update(cookies)

    # -- httpx's API --

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Set a cookie (no domain: sent to every host)."""
        problem = _problem(name, value, self.jar.policy.max_cookie_bytes)
        if problem is None and (not name or any(c in name for c in ";=, \t")
                                or ";" in value or value != value.strip(" \t")):
            problem = ("a name must be a non-empty token; a value may not hold ';' or "
                       "begin or end with white space")
        if problem is None:
            try:
                (name + value).encode("latin-1")
            except UnicodeEncodeError:
                problem = "it is not latin-1"
        if problem is not None:
            raise ValueError(f"cookie {name[:40]!r} refused: {problem}")
        self.jar.set_cookie(Cookie(
            version=0, name=name, value=value, port=None, port_specified=False,
            domain=domain, domain_specified=bool(domain),
            domain_initial_dot=domain.startswith("."), path=path, path_specified=bool(path),
            secure=False, expires=None, discard=True, comment=None, comment_url=None,
            rest={}))

    def _matching(self, name: str, domain: Optional[str], path: Optional[str]) -> List[Cookie]:
        return [c for c in self.jar if c.name == name and domain in (None, c.domain)
                and path in (None, c.path)]

    def get(self, name: str, default: Any = None, domain: Optional[str] = None,
            path: Optional[str] = None) -> Any:
        """The value of the cookie ``name`` (CookieConflict when several
        match: give ``domain`` / ``path``), else ``default``."""
        found = self._matching(name, domain, path)
        if len(found) > 1:
            raise CookieConflict(f"{len(found)} cookies are named {name[:40]!r}: give domain "
                                 "and path")
        if not found or found[0].value is None:
            return default
        return str(found[0].value)

    def delete(self, name: str, domain: Optional[str] = None,
               path: Optional[str] = None) -> None:
        """Remove every cookie ``name`` (of that domain / path if given)."""
        for c in self._matching(name, domain, path):
            self.jar.clear(c.domain, c.path, c.name)

    def clear(self, domain: Optional[str] = None, path: Optional[str] = None) -> None:
        """Remove all cookies, or those of a domain, or of a domain's path."""
        if path is not None and domain is None:
            raise ValueError("clear(path=...) needs a domain too")
        try:
            self.jar.clear(domain, path)
        except KeyError:
            pass

    def update(self, cookies: Any = None, **kwargs: str) -> None:  # type: ignore[override]
        """Add cookies: a dict, (name, value) pairs, or the cookies of a
        ``Cookies`` / ``CookieJar`` with their domains and paths."""
        if isinstance(cookies, (Cookies, CookieJar)):
            jar: CookieJar = cookies.jar if isinstance(cookies, Cookies) else cookies
            for cookie in list(jar):
                self.jar.set_cookie(cookie)
        elif cookies is not None:
            pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
            for name, value in pairs:
                self.set(name, value)
        for name, value in kwargs.items():
            self.set(name, value)

    def extract_cookies(self, response: "Response") -> None:
        """Store the cookies ``response`` set (its request's URL decides
        what it may set)."""
        if response.request is None:
            return
        fields = _set_cookie_fields(response)
        if not fields:
            return
        longest = 2 * self.jar.policy.max_cookie_bytes
        ureq = _urllib_request(response.request.url)
        for field in fields:
            if len(field) > longest:
                continue
            # one field at a time: http.cookiejar drops every cookie of a call
            # when one field breaks its parser (and warns "http.cookiejar bug!");
            # it reads a response through info() alone
            one: Any = _SetCookieFields([_fixed(field)])
            try:
                self.jar.extract_cookies(one, ureq)
            except Exception:   # that warning made an error (-W error): the field is lost
                pass

    def set_cookie_header(self, request: "Request") -> None:
        """Set ``request``'s Cookie header from this jar (unless it has one)."""
        if "cookie" not in request.headers:
            header = self._header(request.url, None)
            if header:
                request.headers["Cookie"] = header

    # -- the Client's hooks --

    def _header(self, url: "URL", extra: Optional["Cookies"]) -> Optional[str]:
        """The Cookie header for ``url``: this jar's cookies, those of
        ``extra`` (a request's ``cookies=``) replacing any of the same name."""
        jar: CookieJar = self.jar
        if extra:
            names = {c.name for c in extra.jar}
            jar = CookieJar(self.jar.policy)    # both sides are within their bounds
            for c in self.jar:
                if c.name not in names:
                    jar.set_cookie(c)
            for c in extra.jar:
                jar.set_cookie(c)
        ureq = _urllib_request(url)
        jar.add_cookie_header(ureq)
        return ureq.get_header("Cookie")

    def _apply(self, request: "Request", defaults: "Headers") -> None:
        """Put the Cookie header of this hop in ``request.extensions``
        (none when the request or the client's headers set Cookie)."""
        ext = request.extensions
        extra = ext.get("cookies")
        header = None
        if (len(self.jar) or extra) and "cookie" not in request.headers \
                and "cookie" not in defaults:
            header = self._header(request.url, extra)
        if header:
            ext["cookie"] = header
        elif "cookie" in ext:
            del ext["cookie"]

    # -- the mapping --

    def __getitem__(self, name: str) -> str:
        value: Optional[str] = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if not self._matching(name, None, None):
            raise KeyError(name)
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.jar)

    def __iter__(self) -> Iterator[str]:
        return (c.name for c in self.jar)

    def __len__(self) -> int:
        return len(self.jar)

    def __bool__(self) -> bool:
        return len(self.jar) > 0

    def __repr__(self) -> str:
        inner = ", ".join(f"{c.name}={c.value} ({c.domain or '*'}{c.path})" for c in self.jar)
        return f"<Cookies [{inner}]>"
