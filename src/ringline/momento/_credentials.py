"""``Credential``: the API key a CacheClient sends and the cache endpoint it
dials, read from the key the way Momento's SDKs read it.

Momento has three kinds of key:

* v1 keys: base64 of a JSON object ``{"api_key": ..., "endpoint": ...}``;
  the key sent is the inner ``api_key``, the cache endpoint
  ``cache.<endpoint>``.
* legacy keys and disposable tokens: a JWT whose payload carries the cache
  endpoint in its ``c`` claim (read without checking the signature: the
  server checks it); the key sent is the JWT itself.
* v2 keys: a JWT with the claim ``t == "g"`` (global); it names no
  endpoint, which comes separately (``MOMENTO_ENDPOINT``), and the cache
  endpoint is ``cache.<endpoint>``.

Lifecycle: an immutable value, built by one of the class methods (or the
constructor, for a server of one's own such as Momento Local or a test
fake) and handed to ``CacheClient``.

Invariants: ``api_key`` is never printed whole (``repr`` shows its ends);
``port`` 443 with ``tls`` True unless built for a local server.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any, Dict, Optional

from ._errors import InvalidArgumentError

__all__ = ["Credential"]

_CACHE_PREFIX = "cache."


def _b64json(text: str, urlsafe: bool) -> Optional[Dict[str, Any]]:
    """The JSON object ``text`` is the base64 of, or None."""
    try:
        raw = text.encode("ascii")
        if urlsafe:
            raw = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        else:
            raw = base64.b64decode(raw, validate=True)
        obj = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _jwt_claims(token: str) -> Optional[Dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    return _b64json(parts[1], urlsafe=True)


def _is_v2(key: str) -> bool:
    claims = _jwt_claims(key)
    return claims is not None and claims.get("t") == "g"


class Credential:
    """An API key and the cache endpoint it is for. ``Credential(api_key,
    endpoint, port=443, tls=True)`` names both directly (``endpoint`` is the
    host to dial, e.g. ``"127.0.0.1"`` with ``port=..., tls=False`` for a
    local server); the class methods read a Momento key."""

    __slots__ = ("api_key", "endpoint", "port", "tls")

    def __init__(self, api_key: str, endpoint: str, port: int = 443, tls: bool = True) -> None:
        if not endpoint:
            raise InvalidArgumentError("the cache endpoint is empty")
        self.api_key = api_key
        self.endpoint = endpoint
        self.port = int(port)
        self.tls = bool(tls)

    @classmethod
    def from_api_key(cls, api_key: str) -> "Credential":
        """A v1 (base64 JSON) or legacy (JWT with a ``c`` claim) key; the
        endpoint comes from the key. A v2 key needs ``from_api_key_v2``."""
        if not api_key:
            raise InvalidArgumentError("the API key is empty")
        v1 = _b64json(api_key, urlsafe=False)
        if v1 is not None:
            try:
                return cls(str(v1["api_key"]), _CACHE_PREFIX + str(v1["endpoint"]))
            except KeyError:
                raise InvalidArgumentError("a v1 API key without api_key/endpoint") from None
        if _is_v2(api_key):
            raise InvalidArgumentError("a v2 API key names no endpoint: use from_api_key_v2("
                                       "key, endpoint) or from_environment_variables_v2()")
        claims = _jwt_claims(api_key)
        if claims is None or not claims.get("c"):
            raise InvalidArgumentError("invalid API key: neither a v1 key nor a JWT with "
                                       "a cache endpoint")
        return cls(api_key, str(claims["c"]))

    @classmethod
    def from_api_key_v2(cls, api_key: str, endpoint: str) -> "Credential":
        """A v2 key and the Momento endpoint (e.g. ``"cell-4-us-west-2-1.
        prod.a.momentohq.com"``); the cache endpoint is ``cache.<endpoint>``."""
        if not api_key:
            raise InvalidArgumentError("the API key is empty")
        if not endpoint:
            raise InvalidArgumentError("the endpoint is empty")
        if not _is_v2(api_key):
            raise InvalidArgumentError("not a v2 API key (use from_api_key for v1 and "
                                       "legacy keys)")
        return cls(api_key, _CACHE_PREFIX + endpoint)

    @classmethod
    def from_environment_variable(cls, env_var_name: str = "MOMENTO_API_KEY") -> "Credential":
        """A v1 or legacy key from an environment variable."""
        key = os.environ.get(env_var_name)
        if not key:
            raise InvalidArgumentError(f"missing environment variable {env_var_name}")
        return cls.from_api_key(key)

    @classmethod
    def from_environment_variables_v2(cls, api_key_env_var: str = "MOMENTO_API_KEY",
                                      endpoint_env_var: str = "MOMENTO_ENDPOINT") -> "Credential":
        """A v2 key and its endpoint from the environment (the variables
        the official SDK reads by default)."""
        key = os.environ.get(api_key_env_var)
        if not key:
            raise InvalidArgumentError(f"missing environment variable {api_key_env_var}")
        endpoint = os.environ.get(endpoint_env_var)
        if not endpoint:
            raise InvalidArgumentError(f"missing environment variable {endpoint_env_var}")
        return cls.from_api_key_v2(key, endpoint)

    @classmethod
    def for_momento_local(cls, host: str = "127.0.0.1", port: int = 8080,
                          api_key: str = "") -> "Credential":
        """A plaintext server on ``host:port`` (Momento Local, a test fake)."""
        return cls(api_key, host, port, tls=False)

    @property
    def target(self) -> str:
        """``host:port`` to dial."""
        host = f"[{self.endpoint}]" if ":" in self.endpoint else self.endpoint
        return f"{host}:{self.port}"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Credential) and (self.api_key, self.endpoint, self.port,
                                                    self.tls) ==
                (other.api_key, other.endpoint, other.port, other.tls))

    def __hash__(self) -> int:
        return hash((self.api_key, self.endpoint, self.port, self.tls))

    def __repr__(self) -> str:
        k = self.api_key
        shown = k[:4] + "..." + k[-4:] if len(k) > 12 else "***"
        return (f"Credential(api_key={shown!r}, endpoint={self.endpoint!r}, "
                f"port={self.port}, tls={self.tls})")
