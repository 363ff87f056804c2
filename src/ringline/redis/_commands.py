"""Typed helpers for everyday Redis commands, shared by every client kind.

Owns: the ``Commands`` mixin (one method per command: it encodes the request
bytes, names the key(s) for routing and picks the reply conversion) and the
reply conversions that make RESP2 and RESP3 answers look the same (a hash is
a dict in both, a set a set, a score a float, a yes/no integer a bool).

Contract with the class that mixes it in: it provides
``_dispatch(data: bytes, key, post)`` where ``data`` is one encoded command,
``key`` is the routing key (bytes), a list of keys (multi-key commands) or
None (keyless), and ``post`` is None or a function applied to the reply. A
client returns an awaitable of the (converted) reply; a pipeline queues the
command and returns itself. The helpers never await anything themselves, so
the hot path (``get``/``set``) costs one format operation and one dispatch.

Reply values: bulk strings are bytes (or read-only memoryviews for values of
at least ``zero_copy_min`` bytes: compare them with ``==`` or ``bytes(v)``),
missing values None, integers int, errors raise ``ResponseError`` subclasses.

Lifecycle: none of its own: the mixin holds no state, its methods live as
long as the client or pipeline they belong to.

Invariants: one method call is one dispatched command, encoded in full
before it is dispatched; a conversion gives the same Python value whether
the server spoke RESP2 or RESP3.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._resp import encode_arg, encode_command

__all__ = ["Commands", "parse_info"]

KeyT = Union[bytes, str, memoryview]


# a key's bytes: a key is encoded as any other argument
_k = encode_arg


def _ks(keys: Iterable[Any]) -> List[bytes]:
    return [_k(k) for k in keys]


def _keys_arg(keys: tuple) -> List[bytes]:
    if len(keys) == 1 and isinstance(keys[0], (list, tuple)):
        keys = keys[0]
    if not keys:
        raise ValueError("at least one key is needed")
    return _ks(keys)


# -- reply conversions (each accepts the RESP2 and the RESP3 form) ------------


def _ok(v: Any) -> bool:
    return True


def _not_none(v: Any) -> bool:
    return v is not None


def _bool(v: Any) -> bool:
    return bool(v)


def _float(v: Any) -> Optional[float]:
    if v is None:
        return None
    if type(v) is float:
        return v
    return float(bytes(v))


def _str(v: Any) -> Any:
    if isinstance(v, (bytes, memoryview)):
        return bytes(v).decode()
    return v


def _dict(v: Any) -> dict:
    if type(v) is dict:
        return v
    if v is None:
        return {}
    it = iter(v)
    return dict(zip(it, it))


def _set(v: Any) -> set:
    if type(v) is set:
        return v
    return set(v)


def _scored(v: Any) -> List[Tuple[Any, float]]:
    if not v:
        return []
    if isinstance(v[0], list):          # RESP3: [[member, score], ...]
        return [(m, _float(s)) for m, s in v]
    it = iter(v)
    return [(m, _float(s)) for m, s in zip(it, it)]


def _scan(v: Any) -> Tuple[int, list]:
    return int(bytes(v[0])), v[1]


def _config(v: Any) -> Dict[str, str]:
    return {bytes(k).decode(): bytes(x).decode() for k, x in _dict(v).items()}


def _value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_info(v: Any) -> Dict[str, Any]:
    """INFO's text as a dict: numbers become int/float, 'a=1,b=2' fields
    (keyspace lines) become dicts."""
    text = bytes(v).decode("utf-8", "replace")
    out: Dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, raw = line.partition(":")
        if "=" in raw and "," in raw or raw.count("=") == 1 and name.startswith("db"):
            sub = {}
            for part in raw.split(","):
                k, _, x = part.partition("=")
                sub[k] = _value(x)
            out[name] = sub
        else:
            out[name] = _value(raw)
    return out


def _set_args(key: bytes, value: Any, ex, px, nx, xx, keepttl, get) -> list:
    args: list = [b"SET", key, value]
    if ex is not None:
        args += [b"EX", int(ex)]
    if px is not None:
        args += [b"PX", int(px)]
    if nx:
        args.append(b"NX")
    if xx:
        args.append(b"XX")
    if keepttl:
        args.append(b"KEEPTTL")
    if get:
        args.append(b"GET")
    return args


class Commands:
    """Typed command helpers; see the module docstring for the contract."""

    __slots__ = ()

    def _dispatch(self, data: bytes, key: Any, post: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _cmd(self, args: Sequence[Any], key: Any = None, post: Any = None) -> Any:
        return self._dispatch(encode_command(args), key, post)

    # -- strings --

    def get(self, key: KeyT) -> Any:
        """GET: the value (bytes / memoryview) or None."""
        t = type(key)
        if t is str:
            key = key.encode()
        elif t is not bytes:
            key = encode_arg(key)
        return self._dispatch(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key), key, None)

    def set(self, key: KeyT, value: Any, *, ex: Optional[float] = None,
            px: Optional[int] = None, nx: bool = False, xx: bool = False,
            keepttl: bool = False, get: bool = False) -> Any:
        """SET: True when set, False when NX/XX prevented it; with get=True
        the previous value (or None) instead."""
        t = type(key)
        if t is str:
            key = key.encode()
        elif t is not bytes:
            key = encode_arg(key)
        if ex is None and px is None and not (nx or xx or keepttl or get):
            t = type(value)
            if t is str:
                value = value.encode()
            elif t is not bytes:
                value = encode_arg(value)
            return self._dispatch(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
                                  % (len(key), key, len(value), value), key, _not_none)
        args = _set_args(key, value, ex, px, nx, xx, keepttl, get)
        return self._cmd(args, key, None if get else _not_none)

    def mget(self, *keys: KeyT) -> Any:
        """MGET: a list of values (None for missing keys)."""
        ks = _keys_arg(keys)
        return self._cmd([b"MGET", *ks], ks)

    def mset(self, mapping: Mapping[KeyT, Any]) -> Any:
        """MSET: True."""
        args: list = [b"MSET"]
        ks = []
        for k, v in mapping.items():
            k = _k(k)
            ks.append(k)
            args += (k, v)
        return self._cmd(args, ks, _ok)

    def msetnx(self, mapping: Mapping[KeyT, Any]) -> Any:
        """MSETNX: True when every key was set (none existed)."""
        args: list = [b"MSETNX"]
        ks = []
        for k, v in mapping.items():
            k = _k(k)
            ks.append(k)
            args += (k, v)
        return self._cmd(args, ks, _bool)

    def getdel(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"GETDEL", key), key)

    def getset(self, key: KeyT, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"GETSET", key, value), key)

    def getex(self, key: KeyT, *, ex: Optional[int] = None, px: Optional[int] = None,
              persist: bool = False) -> Any:
        key = _k(key)
        args: list = [b"GETEX", key]
        if ex is not None:
            args += [b"EX", int(ex)]
        if px is not None:
            args += [b"PX", int(px)]
        if persist:
            args.append(b"PERSIST")
        return self._cmd(args, key)

    def getrange(self, key: KeyT, start: int, end: int) -> Any:
        key = _k(key)
        return self._cmd((b"GETRANGE", key, start, end), key)

    def setrange(self, key: KeyT, offset: int, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"SETRANGE", key, offset, value), key)

    def setex(self, key: KeyT, seconds: int, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"SETEX", key, int(seconds), value), key, _ok)

    def psetex(self, key: KeyT, ms: int, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"PSETEX", key, int(ms), value), key, _ok)

    def setnx(self, key: KeyT, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"SETNX", key, value), key, _bool)

    def append(self, key: KeyT, value: Any) -> Any:
        """APPEND: the new length."""
        key = _k(key)
        return self._cmd((b"APPEND", key, value), key)

    def strlen(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"STRLEN", key), key)

    def incr(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"INCR", key), key)

    def decr(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"DECR", key), key)

    def incrby(self, key: KeyT, amount: int) -> Any:
        key = _k(key)
        return self._cmd((b"INCRBY", key, int(amount)), key)

    def decrby(self, key: KeyT, amount: int) -> Any:
        key = _k(key)
        return self._cmd((b"DECRBY", key, int(amount)), key)

    def incrbyfloat(self, key: KeyT, amount: float) -> Any:
        key = _k(key)
        return self._cmd((b"INCRBYFLOAT", key, float(amount)), key, _float)

    # -- keys --

    def delete(self, *keys: KeyT) -> Any:
        """DEL: how many keys were removed."""
        ks = _keys_arg(keys)
        return self._cmd([b"DEL", *ks], ks if len(ks) > 1 else ks[0])

    def unlink(self, *keys: KeyT) -> Any:
        ks = _keys_arg(keys)
        return self._cmd([b"UNLINK", *ks], ks if len(ks) > 1 else ks[0])

    def exists(self, *keys: KeyT) -> Any:
        """EXISTS: how many of the keys exist."""
        ks = _keys_arg(keys)
        return self._cmd([b"EXISTS", *ks], ks if len(ks) > 1 else ks[0])

    def expire(self, key: KeyT, seconds: int) -> Any:
        key = _k(key)
        return self._cmd((b"EXPIRE", key, int(seconds)), key, _bool)

    def pexpire(self, key: KeyT, ms: int) -> Any:
        key = _k(key)
        return self._cmd((b"PEXPIRE", key, int(ms)), key, _bool)

    def expireat(self, key: KeyT, when: int) -> Any:
        key = _k(key)
        return self._cmd((b"EXPIREAT", key, int(when)), key, _bool)

    def ttl(self, key: KeyT) -> Any:
        """TTL in seconds; -1 no expiry, -2 no such key."""
        key = _k(key)
        return self._cmd((b"TTL", key), key)

    def pttl(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"PTTL", key), key)

    def persist(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"PERSIST", key), key, _bool)

    def type(self, key: KeyT) -> Any:
        """TYPE as a str ('string', 'list', ..., 'none')."""
        key = _k(key)
        return self._cmd((b"TYPE", key), key, _str)

    def rename(self, src: KeyT, dst: KeyT) -> Any:
        src, dst = _k(src), _k(dst)
        return self._cmd((b"RENAME", src, dst), [src, dst], _ok)

    def renamenx(self, src: KeyT, dst: KeyT) -> Any:
        src, dst = _k(src), _k(dst)
        return self._cmd((b"RENAMENX", src, dst), [src, dst], _bool)

    def keys(self, pattern: KeyT = b"*") -> Any:
        """KEYS pattern: a list of keys (avoid on big databases; use scan)."""
        return self._cmd((b"KEYS", pattern), None)

    def scan(self, cursor: int = 0, *, match: Optional[KeyT] = None,
             count: Optional[int] = None, type: Optional[str] = None) -> Any:
        """SCAN: (next_cursor, keys); next_cursor 0 means done."""
        args: list = [b"SCAN", int(cursor)]
        if match is not None:
            args += [b"MATCH", match]
        if count is not None:
            args += [b"COUNT", int(count)]
        if type is not None:
            args += [b"TYPE", type]
        return self._cmd(args, None, _scan)

    async def scan_iter(self, *, match: Optional[KeyT] = None, count: Optional[int] = None,
                        type: Optional[str] = None):
        """Every key SCAN returns (an async iterator; keys may repeat)."""
        cursor = 0
        while True:
            cursor, keys = await self.scan(cursor, match=match, count=count, type=type)
            for k in keys:
                yield k
            if cursor == 0:
                return

    # -- hashes --

    def hset(self, key: KeyT, field: Any = None, value: Any = None, *,
             mapping: Optional[Mapping[Any, Any]] = None) -> Any:
        """HSET key field value / HSET key mapping=...: fields added."""
        key = _k(key)
        args: list = [b"HSET", key]
        if field is not None:
            args += (field, value)
        if mapping:
            for f, v in mapping.items():
                args += (f, v)
        if len(args) == 2:
            raise ValueError("hset needs a field and value or a mapping")
        return self._cmd(args, key)

    def hsetnx(self, key: KeyT, field: Any, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"HSETNX", key, field, value), key, _bool)

    def hget(self, key: KeyT, field: Any) -> Any:
        key = _k(key)
        return self._cmd((b"HGET", key, field), key)

    def hmget(self, key: KeyT, *fields: Any) -> Any:
        key = _k(key)
        if len(fields) == 1 and isinstance(fields[0], (list, tuple)):
            fields = tuple(fields[0])
        return self._cmd((b"HMGET", key, *fields), key)

    def hgetall(self, key: KeyT) -> Any:
        """HGETALL as a dict (in RESP2 and RESP3)."""
        key = _k(key)
        return self._cmd((b"HGETALL", key), key, _dict)

    def hdel(self, key: KeyT, *fields: Any) -> Any:
        key = _k(key)
        return self._cmd((b"HDEL", key, *fields), key)

    def hincrby(self, key: KeyT, field: Any, amount: int = 1) -> Any:
        key = _k(key)
        return self._cmd((b"HINCRBY", key, field, int(amount)), key)

    def hincrbyfloat(self, key: KeyT, field: Any, amount: float) -> Any:
        key = _k(key)
        return self._cmd((b"HINCRBYFLOAT", key, field, float(amount)), key, _float)

    def hkeys(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"HKEYS", key), key)

    def hvals(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"HVALS", key), key)

    def hlen(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"HLEN", key), key)

    def hexists(self, key: KeyT, field: Any) -> Any:
        key = _k(key)
        return self._cmd((b"HEXISTS", key, field), key, _bool)

    # -- lists --

    def lpush(self, key: KeyT, *values: Any) -> Any:
        """LPUSH: the new length."""
        key = _k(key)
        return self._cmd((b"LPUSH", key, *values), key)

    def rpush(self, key: KeyT, *values: Any) -> Any:
        key = _k(key)
        return self._cmd((b"RPUSH", key, *values), key)

    def lpop(self, key: KeyT, count: Optional[int] = None) -> Any:
        """LPOP: a value (or None); with count a list (or None)."""
        key = _k(key)
        if count is None:
            return self._cmd((b"LPOP", key), key)
        return self._cmd((b"LPOP", key, int(count)), key)

    def rpop(self, key: KeyT, count: Optional[int] = None) -> Any:
        key = _k(key)
        if count is None:
            return self._cmd((b"RPOP", key), key)
        return self._cmd((b"RPOP", key, int(count)), key)

    def lrange(self, key: KeyT, start: int, stop: int) -> Any:
        key = _k(key)
        return self._cmd((b"LRANGE", key, int(start), int(stop)), key)

    def llen(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"LLEN", key), key)

    def lindex(self, key: KeyT, index: int) -> Any:
        key = _k(key)
        return self._cmd((b"LINDEX", key, int(index)), key)

    def lset(self, key: KeyT, index: int, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"LSET", key, int(index), value), key, _ok)

    def lrem(self, key: KeyT, count: int, value: Any) -> Any:
        key = _k(key)
        return self._cmd((b"LREM", key, int(count), value), key)

    def ltrim(self, key: KeyT, start: int, stop: int) -> Any:
        key = _k(key)
        return self._cmd((b"LTRIM", key, int(start), int(stop)), key, _ok)

    # -- sets --

    def sadd(self, key: KeyT, *members: Any) -> Any:
        key = _k(key)
        return self._cmd((b"SADD", key, *members), key)

    def srem(self, key: KeyT, *members: Any) -> Any:
        key = _k(key)
        return self._cmd((b"SREM", key, *members), key)

    def smembers(self, key: KeyT) -> Any:
        """SMEMBERS as a set (in RESP2 and RESP3)."""
        key = _k(key)
        return self._cmd((b"SMEMBERS", key), key, _set)

    def sismember(self, key: KeyT, member: Any) -> Any:
        key = _k(key)
        return self._cmd((b"SISMEMBER", key, member), key, _bool)

    def scard(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"SCARD", key), key)

    def sinter(self, *keys: KeyT) -> Any:
        ks = _keys_arg(keys)
        return self._cmd([b"SINTER", *ks], ks, _set)

    def sunion(self, *keys: KeyT) -> Any:
        ks = _keys_arg(keys)
        return self._cmd([b"SUNION", *ks], ks, _set)

    def sdiff(self, *keys: KeyT) -> Any:
        ks = _keys_arg(keys)
        return self._cmd([b"SDIFF", *ks], ks, _set)

    # -- sorted sets --

    def zadd(self, key: KeyT, mapping: Mapping[Any, float], *, nx: bool = False,
             xx: bool = False, gt: bool = False, lt: bool = False, ch: bool = False) -> Any:
        """ZADD key {member: score}: members added (changed with ch=True)."""
        key = _k(key)
        args: list = [b"ZADD", key]
        for flag, word in ((nx, b"NX"), (xx, b"XX"), (gt, b"GT"), (lt, b"LT"), (ch, b"CH")):
            if flag:
                args.append(word)
        if not mapping:
            raise ValueError("zadd needs at least one member")
        for member, score in mapping.items():
            args += (float(score), member)
        return self._cmd(args, key)

    def zrem(self, key: KeyT, *members: Any) -> Any:
        key = _k(key)
        return self._cmd((b"ZREM", key, *members), key)

    def zscore(self, key: KeyT, member: Any) -> Any:
        """ZSCORE as a float (or None)."""
        key = _k(key)
        return self._cmd((b"ZSCORE", key, member), key, _float)

    def zincrby(self, key: KeyT, amount: float, member: Any) -> Any:
        key = _k(key)
        return self._cmd((b"ZINCRBY", key, float(amount), member), key, _float)

    def zcard(self, key: KeyT) -> Any:
        key = _k(key)
        return self._cmd((b"ZCARD", key), key)

    def zcount(self, key: KeyT, min: Any, max: Any) -> Any:
        key = _k(key)
        return self._cmd((b"ZCOUNT", key, min, max), key)

    def zrank(self, key: KeyT, member: Any) -> Any:
        key = _k(key)
        return self._cmd((b"ZRANK", key, member), key)

    def zrevrank(self, key: KeyT, member: Any) -> Any:
        key = _k(key)
        return self._cmd((b"ZREVRANK", key, member), key)

    def zrange(self, key: KeyT, start: int, stop: int, *, withscores: bool = False,
               desc: bool = False) -> Any:
        """ZRANGE by rank: members, or (member, score) pairs with withscores."""
        key = _k(key)
        args: list = [b"ZRANGE", key, int(start), int(stop)]
        if desc:
            args.append(b"REV")
        if withscores:
            args.append(b"WITHSCORES")
            return self._cmd(args, key, _scored)
        return self._cmd(args, key)

    def zrangebyscore(self, key: KeyT, min: Any, max: Any, *, withscores: bool = False,
                      offset: Optional[int] = None, count: Optional[int] = None) -> Any:
        """ZRANGEBYSCORE (min/max may be '-inf', '(1.5', ...)."""
        key = _k(key)
        args: list = [b"ZRANGEBYSCORE", key, min, max]
        if withscores:
            args.append(b"WITHSCORES")
        if offset is not None or count is not None:
            args += [b"LIMIT", int(offset or 0), int(-1 if count is None else count)]
        return self._cmd(args, key, _scored if withscores else None)

    # -- server --

    def ping(self, message: Any = None) -> Any:
        """PING: True (or the echoed message)."""
        if message is None:
            return self._dispatch(b"*1\r\n$4\r\nPING\r\n", None, _ok)
        return self._cmd((b"PING", message), None)

    def echo(self, message: Any) -> Any:
        return self._cmd((b"ECHO", message), None)

    def dbsize(self) -> Any:
        return self._dispatch(b"*1\r\n$6\r\nDBSIZE\r\n", None, None)

    def flushdb(self, asynchronous: bool = False) -> Any:
        return self._cmd((b"FLUSHDB", b"ASYNC") if asynchronous else (b"FLUSHDB",), None, _ok)

    def flushall(self, asynchronous: bool = False) -> Any:
        return self._cmd((b"FLUSHALL", b"ASYNC") if asynchronous else (b"FLUSHALL",), None, _ok)

    def config_get(self, pattern: Any = "*") -> Any:
        """CONFIG GET as a dict of str."""
        return self._cmd((b"CONFIG", b"GET", pattern), None, _config)

    def config_set(self, name: Any, value: Any) -> Any:
        return self._cmd((b"CONFIG", b"SET", name, value), None, _ok)

    def info(self, section: Optional[str] = None) -> Any:
        """INFO as a dict (see parse_info)."""
        if section is None:
            return self._cmd((b"INFO",), None, parse_info)
        return self._cmd((b"INFO", section), None, parse_info)

    def time(self) -> Any:
        """TIME as float seconds."""
        return self._cmd((b"TIME",), None,
                         lambda v: int(bytes(v[0])) + int(bytes(v[1])) / 1e6)


class AllNodesAdmin:
    """The whole-keyspace admin commands of clients spread over several
    servers (ShardedClient, ClusterClient): sent to every server through the
    class's ``_all(method, *args)``, the answers combined."""

    async def _all(self, method: str, *args: Any) -> List[Any]:
        raise NotImplementedError

    async def dbsize(self) -> int:
        return sum(await self._all("dbsize"))

    async def flushdb(self, asynchronous: bool = False) -> bool:
        return all(await self._all("flushdb", asynchronous))

    async def flushall(self, asynchronous: bool = False) -> bool:
        return all(await self._all("flushall", asynchronous))

    async def keys(self, pattern: Any = b"*") -> list:
        out: list = []
        for part in await self._all("keys", pattern):
            out.extend(part)
        return out
