"""``CacheClient``: Momento's cache commands as coroutines returning plain
values.

Owns the commands (scalar get / set / delete / increment / item_get_ttl,
get_batch / set_batch on Scs's streaming batch RPCs, and the dictionary
family), the encoding of their arguments (str as UTF-8, bytes as they are;
TTLs in seconds or ``timedelta``, the client's default when omitted) and the
decoding of the replies into Python values: a hit is ``bytes``, a miss
``None``; a failure raises a ``MomentoError``.

Lifecycle: ``CacheClient(credential, configuration, default_ttl)`` does no
I/O; the first command dials; use it as ``async with`` or ``await
client.close()``. Any number of commands may run at once (from many tasks):
they share the client's channels, each its own HTTP/2 stream.

Invariants: every command names its cache; TTLs sent are whole
milliseconds > 0; a reply the client does not understand raises
MomentoError(UNKNOWN_ERROR) rather than guessing.
"""
from __future__ import annotations

import datetime
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ._config import Configuration
from ._credentials import Credential
from ._errors import ErrorCode, InvalidArgumentError, MomentoError
from ._pb import pb
from ._transport import Transport

__all__ = ["CacheClient"]

Key = Union[str, bytes]
Value = Union[str, bytes]
Ttl = Union[float, int, datetime.timedelta]

_HIT = pb.Hit
_MISS = pb.Miss


def _b(value: Value, what: str = "key") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentError(f"the {what} must be str or bytes, not {type(value).__name__}")


def _ms(ttl: Ttl) -> int:
    secs = ttl.total_seconds() if isinstance(ttl, datetime.timedelta) else ttl
    if not isinstance(secs, (int, float)) or isinstance(secs, bool) or not secs > 0:
        raise InvalidArgumentError(f"a TTL must be a positive number of seconds, not {ttl!r}")
    return max(1, int(round(secs * 1000)))


def _unknown(what: str) -> MomentoError:
    return MomentoError(f"{what}: the server's reply has an unknown result",
                        code=ErrorCode.UNKNOWN_ERROR)


class CacheClient:
    """A client of Momento's cache service. ``credential``: a Credential
    (the key and endpoint); ``configuration``: a Configuration (default
    ``Configuration.laptop()``); ``default_ttl``: seconds or a timedelta,
    the TTL of writes that give none."""

    def __init__(self, credential: Credential, configuration: Optional[Configuration] = None,
                 default_ttl: Ttl = 60.0) -> None:
        if not isinstance(credential, Credential):
            raise TypeError("credential must be a ringline.momento.Credential")
        self.configuration = configuration or Configuration.laptop()
        self._default_ms = _ms(default_ttl)
        self._t = Transport(credential, self.configuration)
        self._call = self._t.call

    def _ttl(self, ttl: Optional[Ttl]) -> int:
        return self._default_ms if ttl is None else _ms(ttl)

    async def close(self) -> None:
        """Close the channels; commands in flight fail."""
        await self._t.close()

    async def __aenter__(self) -> "CacheClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- scalars --

    async def get(self, cache_name: str, key: Key) -> Optional[bytes]:
        """The value (bytes), or None on a miss."""
        r = await self._call("Get", pb._GetRequest(cache_key=_b(key)), cache_name)
        if r.result == _HIT:
            return bytes(r.cache_body)
        if r.result == _MISS:
            return None
        raise _unknown("get")

    async def set(self, cache_name: str, key: Key, value: Value,
                  ttl: Optional[Ttl] = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` (default: the client's)."""
        await self._call("Set", pb._SetRequest(cache_key=_b(key), cache_body=_b(value, "value"),
                                               ttl_milliseconds=self._ttl(ttl)), cache_name)

    async def delete(self, cache_name: str, key: Key) -> None:
        """Remove ``key`` (no error if it is absent)."""
        await self._call("Delete", pb._DeleteRequest(cache_key=_b(key)), cache_name)

    async def increment(self, cache_name: str, key: Key, amount: int = 1,
                        ttl: Optional[Ttl] = None) -> int:
        """Add ``amount`` to the integer stored (as decimal text) under
        ``key`` (0 if absent) and return the sum; never retried (not
        idempotent). A value that is not an integer: FailedPreconditionError."""
        r = await self._call("Increment", pb._IncrementRequest(
            cache_key=_b(key), amount=int(amount), ttl_milliseconds=self._ttl(ttl)), cache_name)
        return int(r.value)

    async def item_get_ttl(self, cache_name: str, key: Key) -> Optional[float]:
        """Seconds ``key`` has left, or None if it is absent."""
        r = await self._call("ItemGetTtl", pb._ItemGetTtlRequest(cache_key=_b(key)), cache_name)
        which = r.WhichOneof("result")
        if which == "found":
            return float(r.found.remaining_ttl_millis) / 1000.0
        if which == "missing":
            return None
        raise _unknown("item_get_ttl")

    # -- batches (one streaming RPC each) --

    async def get_batch(self, cache_name: str, keys: Iterable[Key]) -> List[Optional[bytes]]:
        """The values of ``keys``, in their order (None for each miss)."""
        items = [pb._GetRequest(cache_key=_b(k)) for k in keys]
        if not items:
            return []
        replies = await self._call("GetBatch", pb._GetBatchRequest(items=items), cache_name)
        if len(replies) != len(items):
            raise MomentoError(f"get_batch: {len(replies)} replies for {len(items)} keys",
                               code=ErrorCode.UNKNOWN_ERROR)
        out: List[Optional[bytes]] = []
        for r in replies:
            if r.result == _HIT:
                out.append(r.cache_body)
            elif r.result == _MISS:
                out.append(None)
            else:
                raise _unknown("get_batch")
        return out

    async def set_batch(self, cache_name: str,
                        items: Union[Mapping[Key, Value], Iterable[Tuple[Key, Value]]],
                        ttl: Optional[Ttl] = None) -> None:
        """Store every (key, value) of ``items`` with one TTL."""
        ms = self._ttl(ttl)
        pairs = items.items() if isinstance(items, Mapping) else items
        reqs = [pb._SetRequest(cache_key=_b(k), cache_body=_b(v, "value"), ttl_milliseconds=ms)
                for k, v in pairs]
        if not reqs:
            return
        replies = await self._call("SetBatch", pb._SetBatchRequest(items=reqs), cache_name)
        if len(replies) != len(reqs):
            raise MomentoError(f"set_batch: {len(replies)} replies for {len(reqs)} items",
                               code=ErrorCode.UNKNOWN_ERROR)

    # -- dictionaries --

    async def dictionary_set_fields(self, cache_name: str, dictionary_name: Key,
                                    items: Union[Mapping[Key, Value],
                                                 Iterable[Tuple[Key, Value]]],
                                    ttl: Optional[Ttl] = None, refresh_ttl: bool = True) -> None:
        """Set fields of a dictionary (created if absent); ``refresh_ttl``:
        the dictionary's TTL restarts at ``ttl`` (else only a new one gets it)."""
        pairs = items.items() if isinstance(items, Mapping) else items
        fv = [pb._DictionaryFieldValuePair(field=_b(f, "field"), value=_b(v, "value"))
              for f, v in pairs]
        await self._call("DictionarySet", pb._DictionarySetRequest(
            dictionary_name=_b(dictionary_name, "dictionary name"), items=fv,
            ttl_milliseconds=self._ttl(ttl), refresh_ttl=refresh_ttl), cache_name)

    async def dictionary_set_field(self, cache_name: str, dictionary_name: Key, field: Key,
                                   value: Value, ttl: Optional[Ttl] = None,
                                   refresh_ttl: bool = True) -> None:
        await self.dictionary_set_fields(cache_name, dictionary_name, ((field, value),), ttl,
                                         refresh_ttl)

    async def dictionary_get_fields(self, cache_name: str, dictionary_name: Key,
                                    fields: Iterable[Key]) -> List[Optional[bytes]]:
        """The values of ``fields`` in their order (None for each absent
        one; all None when the dictionary is absent)."""
        fs = [_b(f, "field") for f in fields]
        r = await self._call("DictionaryGet", pb._DictionaryGetRequest(
            dictionary_name=_b(dictionary_name, "dictionary name"), fields=fs), cache_name)
        which = r.WhichOneof("dictionary")
        if which == "missing":
            return [None] * len(fs)
        if which != "found" or len(r.found.items) != len(fs):
            raise _unknown("dictionary_get_fields")
        out: List[Optional[bytes]] = []
        for part in r.found.items:
            if part.result == _HIT:
                out.append(part.cache_body)
            elif part.result == _MISS:
                out.append(None)
            else:
                raise _unknown("dictionary_get_fields")
        return out

    async def dictionary_get_field(self, cache_name: str, dictionary_name: Key,
                                   field: Key) -> Optional[bytes]:
        return (await self.dictionary_get_fields(cache_name, dictionary_name, (field,)))[0]

    async def dictionary_fetch(self, cache_name: str,
                               dictionary_name: Key) -> Optional[Dict[bytes, bytes]]:
        """The whole dictionary, or None if it is absent."""
        r = await self._call("DictionaryFetch", pb._DictionaryFetchRequest(
            dictionary_name=_b(dictionary_name, "dictionary name")), cache_name)
        which = r.WhichOneof("dictionary")
        if which == "found":
            return {p.field: p.value for p in r.found.items}
        if which == "missing":
            return None
        raise _unknown("dictionary_fetch")

    async def dictionary_increment(self, cache_name: str, dictionary_name: Key, field: Key,
                                   amount: int = 1, ttl: Optional[Ttl] = None,
                                   refresh_ttl: bool = True) -> int:
        """Add ``amount`` to an integer field; never retried."""
        r = await self._call("DictionaryIncrement", pb._DictionaryIncrementRequest(
            dictionary_name=_b(dictionary_name, "dictionary name"), field=_b(field, "field"),
            amount=int(amount), ttl_milliseconds=self._ttl(ttl), refresh_ttl=refresh_ttl),
            cache_name)
        return int(r.value)

    async def dictionary_remove_fields(self, cache_name: str, dictionary_name: Key,
                                       fields: Iterable[Key]) -> None:
        """Remove fields (absent ones are ignored)."""
        some = pb._DictionaryDeleteRequest.Some(fields=[_b(f, "field") for f in fields])
        await self._call("DictionaryDelete", pb._DictionaryDeleteRequest(
            dictionary_name=_b(dictionary_name, "dictionary name"), some=some), cache_name)

    async def dictionary_remove_field(self, cache_name: str, dictionary_name: Key,
                                      field: Key) -> None:
        await self.dictionary_remove_fields(cache_name, dictionary_name, (field,))
