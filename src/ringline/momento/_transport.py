"""The calling half of ``CacheClient``: its channels, the Scs methods on
them, the per-request metadata, the deadline and the retries.

Owns a round-robin pool of ``ringline.grpc.Channel`` to the credential's
endpoint (``Configuration.channels`` of them, each one HTTP/2 connection
that many calls share, so requests are pipelined: nothing waits for a
previous reply), the table of ``cache_client.Scs`` methods (path, message
types, unary or server-streaming, idempotent or not), and ``call``, which
runs one command to its reply or its MomentoError.

Lifecycle: built with the client (no I/O); the first call dials;
``close()`` closes every channel (calls in flight end UNAVAILABLE, later
ones raise ServerUnavailableError at once, without retries).

Invariants: every call carries ``authorization`` (the channel's metadata)
and ``cache`` (its own); a channel's first call also ``agent`` and
``runtime-version`` (once, as the official SDK); each attempt has the configured deadline; only the
methods the official SDK retries are retried, only on the configured
statuses, at most ``max_retries`` times; errors leave as MomentoError.
"""
from __future__ import annotations

import asyncio
import random
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..grpc import AioRpcError, Channel
from ._config import Configuration
from ._credentials import Credential
from ._errors import InvalidArgumentError, ServerUnavailableError, from_rpc_error
from ._pb import pb

__all__ = ["Transport"]

_AGENT = "python:ringline:0.1"

# name: (request type, response type, server streaming, retried); the
# retried ones are the official SDK's idempotent set
_METHODS: Dict[str, Tuple[Any, Any, bool, bool]] = {
    "Get": (pb._GetRequest, pb._GetResponse, False, True),
    "GetBatch": (pb._GetBatchRequest, pb._GetResponse, True, True),
    "Set": (pb._SetRequest, pb._SetResponse, False, True),
    "SetBatch": (pb._SetBatchRequest, pb._SetResponse, True, True),
    "Delete": (pb._DeleteRequest, pb._DeleteResponse, False, True),
    "Increment": (pb._IncrementRequest, pb._IncrementResponse, False, False),
    "ItemGetTtl": (pb._ItemGetTtlRequest, pb._ItemGetTtlResponse, False, True),
    "DictionaryGet": (pb._DictionaryGetRequest, pb._DictionaryGetResponse, False, True),
    "DictionaryFetch": (pb._DictionaryFetchRequest, pb._DictionaryFetchResponse, False, True),
    "DictionarySet": (pb._DictionarySetRequest, pb._DictionarySetResponse, False, True),
    "DictionaryIncrement": (pb._DictionaryIncrementRequest, pb._DictionaryIncrementResponse,
                            False, False),
    "DictionaryDelete": (pb._DictionaryDeleteRequest, pb._DictionaryDeleteResponse, False, True),
}


def _stubs(channel: Channel) -> Dict[str, Any]:
    out = {}
    for name, (req, resp, streaming, _) in _METHODS.items():
        make = channel.unary_stream if streaming else channel.unary_unary
        out[name] = make("/cache_client.Scs/" + name, request_serializer=req.SerializeToString,
                         response_deserializer=resp.FromString)
    return out


class Transport:
    __slots__ = ("_channels", "_stubs", "_next", "_count", "_deadline", "_retries",
                 "_statuses", "_backoff", "_backoff_max", "_md", "_once", "_fresh", "closed")

    def __init__(self, credential: Credential, config: Configuration) -> None:
        metadata = [("authorization", credential.api_key)]
        self._channels = [Channel(credential.target, tls=True if credential.tls else None,
                                  metadata=metadata, options=config.channel_options)
                          for _ in range(config.channels)]
        # sent on a channel's first call only, as the official SDK does
        self._once = [("agent", _AGENT), ("runtime-version", "python " + sys.version.split()[0])]
        self._fresh = [True] * config.channels
        self._stubs = [_stubs(c) for c in self._channels]
        self._count = len(self._stubs)
        self._next = 0
        self._deadline = config.deadline
        self._retries = config.max_retries
        self._statuses = config.retry_statuses
        self._backoff = config.retry_backoff
        self._backoff_max = config.retry_backoff_max
        self._md: Dict[str, List[Tuple[str, str]]] = {}
        self.closed = False

    def _metadata(self, cache_name: str) -> List[Tuple[str, str]]:
        md = self._md.get(cache_name)
        if md is None:
            if not isinstance(cache_name, str) or not cache_name:
                raise InvalidArgumentError("the cache name must be a non-empty string")
            if not cache_name.isascii() or not cache_name.isprintable():
                raise InvalidArgumentError(f"the cache name {cache_name!r} must be "
                                           "printable ASCII")
            md = self._md[cache_name] = [("cache", cache_name)]
        return md

    def _delay(self, name: str, err: AioRpcError, attempt: int) -> Optional[float]:
        """Seconds to wait before retrying, or None: do not retry."""
        if attempt >= self._retries or err.code() not in self._statuses or not _METHODS[name][3]:
            return None
        base = min(self._backoff * (1 << attempt), self._backoff_max)
        return base * (0.5 + random.random())

    async def call(self, name: str, request: Any, cache_name: str) -> Any:
        """One command: the response message (a list of them for the
        streaming methods), retried as configured; failures raise
        MomentoError."""
        if self.closed:
            raise ServerUnavailableError("the client is closed")
        md = self._metadata(cache_name)
        streaming = _METHODS[name][2]
        attempt = 0
        while True:
            i = self._next
            self._next = (i + 1) % self._count
            stub = self._stubs[i][name]
            cmd = md
            if self._fresh[i]:
                self._fresh[i] = False
                cmd = md + self._once
            try:
                if streaming:
                    return [r async for r in stub(request, metadata=cmd, timeout=self._deadline)]
                return await stub(request, metadata=cmd, timeout=self._deadline)
            except AioRpcError as e:
                delay = self._delay(name, e, attempt)
                if delay is None:
                    raise from_rpc_error(e) from None
            attempt += 1
            if delay > 0:
                await asyncio.sleep(delay)

    async def close(self) -> None:
        self.closed = True
        for c in self._channels:
            await c.close()
