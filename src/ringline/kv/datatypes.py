"""The data commands of ringline.kv: strings, keys and expiry, hashes,
lists, sets.

Owns: one function per command, `fn(ks, args) -> reply value` (args[0] is
the command name; the arity was checked by the dispatcher), the argument
parsing rules they share (Redis' strict integers) and the exact Redis error
texts. Reply values are the ones ringline.kv.resp encodes.

Lifecycle: stateless; the state is the Keyspace passed in.

Invariants:
  - a write command that changes nothing leaves ks.dirty as it was (the
    dispatcher journals a write only when dirty moved);
  - expiry is journalled as absolute deadlines: a command whose meaning
    depends on the clock (SET with EX/PX, EXPIRE, PEXPIRE) stores a rewrite
    in `REWRITE[0]` (a list of argument lists) for the dispatcher to journal
    instead of the command itself, so a replay at a later time gives the
    same keyspace;
  - emptied hashes, lists and sets are deleted (Keyspace's invariant).
"""
from __future__ import annotations

import re
from collections import deque
from itertools import islice
from typing import Any, Dict, List, Optional

from .resp import NULL_ARRAY, OK, Error, Map, SetReply, Simple
from .store import Keyspace

__all__ = ["COMMANDS", "REWRITE", "WRONGTYPE", "NOT_INT", "SYNTAX", "parse_int"]

WRONGTYPE = Error(b"WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INT = Error(b"ERR value is not an integer or out of range")
SYNTAX = Error(b"ERR syntax error")
OVERFLOW = Error(b"ERR increment or decrement would overflow")
HASH_NOT_INT = Error(b"ERR hash value is not an integer")
NOT_POSITIVE = Error(b"ERR value is out of range, must be positive")

MAX_STRING = 512 << 20          # Redis' proto-max-bulk-len: the largest string value
_INT_RE = re.compile(rb"0|-?[1-9][0-9]{0,18}")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

# the journal rewrite of the last command, if it needs one (see the doc)
REWRITE: List[Optional[List[List[bytes]]]] = [None]


def parse_int(b: bytes) -> Optional[int]:
    """A signed 64-bit integer spelled as Redis' string2ll accepts it, or
    None."""
    if _INT_RE.fullmatch(b) is None:
        return None
    v = int(b)
    if v < _I64_MIN or v > _I64_MAX:
        return None
    return v


def _wrong_args(name: str) -> Error:
    return Error(b"ERR wrong number of arguments for '%s' command" % name.encode())


# -- strings ----------------------------------------------------------------

def _get_string(ks: Keyspace, key: bytes) -> Any:
    v = ks.lookup(key)
    if v is not None and type(v) is not bytes:
        return WRONGTYPE
    return v


def cmd_get(ks: Keyspace, a: List[bytes]) -> Any:
    return _get_string(ks, a[1])


def cmd_set(ks: Keyspace, a: List[bytes]) -> Any:
    key, value = a[1], a[2]
    nx = xx = get = keepttl = False
    at_ms: Optional[int] = None
    unit = None
    i = 3
    n = len(a)
    while i < n:
        opt = a[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get = True
        elif opt == b"KEEPTTL" and unit is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and unit is None and not keepttl \
                and i + 1 < n:
            unit = opt
            i += 1
            t = parse_int(a[i])
            if t is None:
                return NOT_INT
            if t <= 0 or (opt in (b"EX", b"EXAT") and t > _I64_MAX // 1000):
                return Error(b"ERR invalid expire time in 'set' command")
            if opt == b"EX":
                at_ms = ks.clock() + t * 1000
            elif opt == b"PX":
                at_ms = ks.clock() + t
            elif opt == b"EXAT":
                at_ms = t * 1000
            else:
                at_ms = t
        else:
            return SYNTAX
        i += 1
    old = ks.lookup(key)
    if get and old is not None and type(old) is not bytes:
        return WRONGTYPE
    if (nx and old is not None) or (xx and old is None):
        return old if get else None
    ks.set(key, value, keep_ttl=keepttl)
    if at_ms is not None:
        ks.expire_at(key, at_ms)
        REWRITE[0] = [[b"SET", key, value, b"PXAT", b"%d" % at_ms]]
    # else the command journals as it came (NX/XX/GET/KEEPTTL replay the same)
    return old if get else OK


def cmd_mget(ks: Keyspace, a: List[bytes]) -> Any:
    out = []
    for key in a[1:]:
        v = ks.lookup(key)
        out.append(v if type(v) is bytes else None)
    return out


def cmd_mset(ks: Keyspace, a: List[bytes]) -> Any:
    if len(a) % 2 == 0:
        return _wrong_args("mset")
    for i in range(1, len(a), 2):
        ks.set(a[i], a[i + 1])
    return OK


def _incr(ks: Keyspace, key: bytes, by: int) -> Any:
    v = ks.lookup(key)
    cur = 0
    if v is not None:
        if type(v) is not bytes:
            return WRONGTYPE
        parsed = parse_int(v)
        if parsed is None:
            return NOT_INT
        cur = parsed
    new = cur + by
    if new < _I64_MIN or new > _I64_MAX:
        return OVERFLOW
    ks.set(key, b"%d" % new, keep_ttl=True)
    return new


def cmd_incr(ks: Keyspace, a: List[bytes]) -> Any:
    return _incr(ks, a[1], 1)


def cmd_decr(ks: Keyspace, a: List[bytes]) -> Any:
    return _incr(ks, a[1], -1)


def cmd_incrby(ks: Keyspace, a: List[bytes]) -> Any:
    by = parse_int(a[2])
    if by is None:
        return NOT_INT
    return _incr(ks, a[1], by)


def cmd_decrby(ks: Keyspace, a: List[bytes]) -> Any:
    by = parse_int(a[2])
    if by is None:
        return NOT_INT
    if by == _I64_MIN:
        return Error(b"ERR decrement would overflow")
    return _incr(ks, a[1], -by)


def cmd_append(ks: Keyspace, a: List[bytes]) -> Any:
    v = _get_string(ks, a[1])
    if type(v) is Error:
        return v
    if len(v or b"") + len(a[2]) > MAX_STRING:
        return Error(b"ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    new = (v or b"") + a[2]
    ks.set(a[1], new, keep_ttl=True)
    return len(new)


def cmd_strlen(ks: Keyspace, a: List[bytes]) -> Any:
    v = _get_string(ks, a[1])
    if type(v) is Error:
        return v
    return 0 if v is None else len(v)


# -- keys and expiry ------------------------------------------------------------

def cmd_del(ks: Keyspace, a: List[bytes]) -> Any:
    return sum(1 for key in a[1:] if ks.delete(key))


def cmd_exists(ks: Keyspace, a: List[bytes]) -> Any:
    return sum(1 for key in a[1:] if ks.lookup(key) is not None)


def cmd_type(ks: Keyspace, a: List[bytes]) -> Any:
    from .store import type_name
    v = ks.lookup(a[1])
    return Simple(b"none" if v is None else type_name(v))


def _expire_generic(ks: Keyspace, a: List[bytes], scale: int, absolute: bool) -> Any:
    key = a[1]
    t = parse_int(a[2])
    if t is None:
        return NOT_INT
    nx = xx = gt = lt = False
    for opt in a[3:]:
        o = opt.upper()
        if o == b"NX":
            nx = True
        elif o == b"XX":
            xx = True
        elif o == b"GT":
            gt = True
        elif o == b"LT":
            lt = True
        else:
            return Error(b"ERR Unsupported option " + opt)
    if nx and (xx or gt or lt):
        return Error(b"ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        return Error(b"ERR GT and LT options at the same time are not compatible")
    name = a[0].lower()
    if scale == 1000 and (t > _I64_MAX // 1000 or t < _I64_MIN // 1000):
        return Error(b"ERR invalid expire time in '%s' command" % name)
    at = t * scale
    if not absolute:
        base = ks.clock()
        if at > _I64_MAX - base:
            return Error(b"ERR invalid expire time in '%s' command" % name)
        at += base
    if ks.lookup(key) is None:
        return 0
    cur = ks.expires.get(key)
    if nx and cur is not None:
        return 0
    if xx and cur is None:
        return 0
    if gt and (cur is None or at <= cur):
        return 0
    if lt and cur is not None and at >= cur:
        return 0
    ks.expire_at(key, at)
    if key in ks.data:
        REWRITE[0] = [[b"PEXPIREAT", key, b"%d" % at]]
    else:
        REWRITE[0] = [[b"DEL", key]]
    return 1


def cmd_expire(ks: Keyspace, a: List[bytes]) -> Any:
    return _expire_generic(ks, a, 1000, False)


def cmd_pexpire(ks: Keyspace, a: List[bytes]) -> Any:
    return _expire_generic(ks, a, 1, False)


def cmd_expireat(ks: Keyspace, a: List[bytes]) -> Any:
    return _expire_generic(ks, a, 1000, True)


def cmd_pexpireat(ks: Keyspace, a: List[bytes]) -> Any:
    return _expire_generic(ks, a, 1, True)


def cmd_ttl(ks: Keyspace, a: List[bytes]) -> Any:
    if ks.lookup(a[1]) is None:
        return -2
    ms = ks.ttl_ms(a[1])
    return -1 if ms is None else (ms + 500) // 1000


def cmd_pttl(ks: Keyspace, a: List[bytes]) -> Any:
    if ks.lookup(a[1]) is None:
        return -2
    ms = ks.ttl_ms(a[1])
    return -1 if ms is None else ms


def cmd_persist(ks: Keyspace, a: List[bytes]) -> Any:
    if ks.lookup(a[1]) is None:
        return 0
    return 1 if ks.persist(a[1]) else 0


# -- hashes -------------------------------------------------------------------

def _get_typed(ks: Keyspace, key: bytes, t: type) -> Any:
    v = ks.lookup(key)
    if v is not None and type(v) is not t:
        return WRONGTYPE
    return v


def cmd_hset(ks: Keyspace, a: List[bytes]) -> Any:
    if len(a) % 2 == 1:
        return _wrong_args(a[0].decode("latin-1").lower())
    h = _get_typed(ks, a[1], dict)
    if h is WRONGTYPE:
        return h
    if h is None:
        h = {}
        ks.data[a[1]] = h
    added = 0
    for i in range(2, len(a), 2):
        if a[i] not in h:
            added += 1
        h[a[i]] = a[i + 1]
    ks.dirty += 1
    return added


def cmd_hget(ks: Keyspace, a: List[bytes]) -> Any:
    h = _get_typed(ks, a[1], dict)
    if h is None or h is WRONGTYPE:
        return h
    return h.get(a[2])


def cmd_hdel(ks: Keyspace, a: List[bytes]) -> Any:
    h = _get_typed(ks, a[1], dict)
    if h is None:
        return 0
    if h is WRONGTYPE:
        return h
    n = 0
    for f in a[2:]:
        if h.pop(f, None) is not None:
            n += 1
    if n:
        if not h:
            ks.delete(a[1])
        ks.dirty += 1
    return n


def cmd_hgetall(ks: Keyspace, a: List[bytes]) -> Any:
    h = _get_typed(ks, a[1], dict)
    if h is WRONGTYPE:
        return h
    out = Map()
    if h:
        for k, v in h.items():
            out.append(k)
            out.append(v)
    return out


def cmd_hlen(ks: Keyspace, a: List[bytes]) -> Any:
    h = _get_typed(ks, a[1], dict)
    if h is WRONGTYPE:
        return h
    return len(h) if h else 0


def cmd_hexists(ks: Keyspace, a: List[bytes]) -> Any:
    h = _get_typed(ks, a[1], dict)
    if h is WRONGTYPE:
        return h
    return 1 if h and a[2] in h else 0


def cmd_hincrby(ks: Keyspace, a: List[bytes]) -> Any:
    by = parse_int(a[3])
    if by is None:
        return NOT_INT
    h = _get_typed(ks, a[1], dict)
    if h is WRONGTYPE:
        return h
    cur = 0
    if h is not None and a[2] in h:
        parsed = parse_int(h[a[2]])
        if parsed is None:
            return HASH_NOT_INT
        cur = parsed
    new = cur + by
    if new < _I64_MIN or new > _I64_MAX:
        return OVERFLOW
    if h is None:
        h = {}
        ks.data[a[1]] = h
    h[a[2]] = b"%d" % new
    ks.dirty += 1
    return new


# -- lists --------------------------------------------------------------------

def _push(ks: Keyspace, a: List[bytes], left: bool) -> Any:
    lst = _get_typed(ks, a[1], deque)
    if lst is WRONGTYPE:
        return lst
    if lst is None:
        lst = deque()
        ks.data[a[1]] = lst
    if left:
        lst.extendleft(a[2:])
    else:
        lst.extend(a[2:])
    ks.dirty += 1
    return len(lst)


def cmd_lpush(ks: Keyspace, a: List[bytes]) -> Any:
    return _push(ks, a, True)


def cmd_rpush(ks: Keyspace, a: List[bytes]) -> Any:
    return _push(ks, a, False)


def _pop(ks: Keyspace, a: List[bytes], left: bool) -> Any:
    if len(a) > 3:
        return _wrong_args(a[0].decode("latin-1").lower())
    count = None
    if len(a) == 3:
        count = parse_int(a[2])
        if count is None or count < 0:
            return NOT_POSITIVE
    lst = _get_typed(ks, a[1], deque)
    if lst is WRONGTYPE:
        return lst
    if lst is None:
        return None if count is None else NULL_ARRAY
    pop = lst.popleft if left else lst.pop
    if count is None:
        out: Any = pop()
    else:
        out = [pop() for _ in range(min(count, len(lst)))]
        if not out:
            return out
    if not lst:
        ks.delete(a[1])
    ks.dirty += 1
    return out


def cmd_lpop(ks: Keyspace, a: List[bytes]) -> Any:
    return _pop(ks, a, True)


def cmd_rpop(ks: Keyspace, a: List[bytes]) -> Any:
    return _pop(ks, a, False)


def cmd_lrange(ks: Keyspace, a: List[bytes]) -> Any:
    start, stop = parse_int(a[2]), parse_int(a[3])
    if start is None or stop is None:
        return NOT_INT
    lst = _get_typed(ks, a[1], deque)
    if lst is WRONGTYPE:
        return lst
    if lst is None:
        return []
    n = len(lst)
    if start < 0:
        start = max(0, n + start)
    if stop < 0:
        stop = n + stop
    if stop >= n:
        stop = n - 1
    if start > stop or start >= n:
        return []
    if start > n // 2:
        # walk from the right end: a deque indexes from either end cheaply
        return list(islice(reversed(lst), n - 1 - stop, n - start))[::-1]
    return list(islice(lst, start, stop + 1))


def cmd_llen(ks: Keyspace, a: List[bytes]) -> Any:
    lst = _get_typed(ks, a[1], deque)
    if lst is WRONGTYPE:
        return lst
    return len(lst) if lst else 0


# -- sets ---------------------------------------------------------------------

def cmd_sadd(ks: Keyspace, a: List[bytes]) -> Any:
    s = _get_typed(ks, a[1], set)
    if s is WRONGTYPE:
        return s
    if s is None:
        s = set()
        ks.data[a[1]] = s
    before = len(s)
    s.update(a[2:])
    added = len(s) - before
    if added:
        ks.dirty += 1
    return added


def cmd_srem(ks: Keyspace, a: List[bytes]) -> Any:
    s = _get_typed(ks, a[1], set)
    if s is None:
        return 0
    if s is WRONGTYPE:
        return s
    before = len(s)
    s.difference_update(a[2:])
    removed = before - len(s)
    if removed:
        if not s:
            ks.delete(a[1])
        ks.dirty += 1
    return removed


def cmd_smembers(ks: Keyspace, a: List[bytes]) -> Any:
    s = _get_typed(ks, a[1], set)
    if s is WRONGTYPE:
        return s
    return SetReply(s) if s else SetReply()


def cmd_sismember(ks: Keyspace, a: List[bytes]) -> Any:
    s = _get_typed(ks, a[1], set)
    if s is WRONGTYPE:
        return s
    return 1 if s and a[2] in s else 0


def cmd_scard(ks: Keyspace, a: List[bytes]) -> Any:
    s = _get_typed(ks, a[1], set)
    if s is WRONGTYPE:
        return s
    return len(s) if s else 0


# name -> (function, arity (Redis' convention: n exact, -n at least n),
#          is_write, first key, last key (-1: the last argument), key step)
Spec = Any
COMMANDS: Dict[bytes, Spec] = {
    b"get": (cmd_get, 2, False, 1, 1, 1),
    b"set": (cmd_set, -3, True, 1, 1, 1),
    b"mget": (cmd_mget, -2, False, 1, -1, 1),
    b"mset": (cmd_mset, -3, True, 1, -1, 2),
    b"incr": (cmd_incr, 2, True, 1, 1, 1),
    b"decr": (cmd_decr, 2, True, 1, 1, 1),
    b"incrby": (cmd_incrby, 3, True, 1, 1, 1),
    b"decrby": (cmd_decrby, 3, True, 1, 1, 1),
    b"append": (cmd_append, 3, True, 1, 1, 1),
    b"strlen": (cmd_strlen, 2, False, 1, 1, 1),
    b"del": (cmd_del, -2, True, 1, -1, 1),
    b"exists": (cmd_exists, -2, False, 1, -1, 1),
    b"type": (cmd_type, 2, False, 1, 1, 1),
    b"expire": (cmd_expire, -3, True, 1, 1, 1),
    b"pexpire": (cmd_pexpire, -3, True, 1, 1, 1),
    b"expireat": (cmd_expireat, -3, True, 1, 1, 1),
    b"pexpireat": (cmd_pexpireat, -3, True, 1, 1, 1),
    b"ttl": (cmd_ttl, 2, False, 1, 1, 1),
    b"pttl": (cmd_pttl, 2, False, 1, 1, 1),
    b"persist": (cmd_persist, 2, True, 1, 1, 1),
    b"hset": (cmd_hset, -4, True, 1, 1, 1),
    b"hget": (cmd_hget, 3, False, 1, 1, 1),
    b"hdel": (cmd_hdel, -3, True, 1, 1, 1),
    b"hgetall": (cmd_hgetall, 2, False, 1, 1, 1),
    b"hlen": (cmd_hlen, 2, False, 1, 1, 1),
    b"hexists": (cmd_hexists, 3, False, 1, 1, 1),
    b"hincrby": (cmd_hincrby, 4, True, 1, 1, 1),
    b"lpush": (cmd_lpush, -3, True, 1, 1, 1),
    b"rpush": (cmd_rpush, -3, True, 1, 1, 1),
    b"lpop": (cmd_lpop, -2, True, 1, 1, 1),
    b"rpop": (cmd_rpop, -2, True, 1, 1, 1),
    b"lrange": (cmd_lrange, 4, False, 1, 1, 1),
    b"llen": (cmd_llen, 2, False, 1, 1, 1),
    b"sadd": (cmd_sadd, -3, True, 1, 1, 1),
    b"srem": (cmd_srem, -3, True, 1, 1, 1),
    b"smembers": (cmd_smembers, 2, False, 1, 1, 1),
    b"sismember": (cmd_sismember, 3, False, 1, 1, 1),
    b"scard": (cmd_scard, 2, False, 1, 1, 1),
}
