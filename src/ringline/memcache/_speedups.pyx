# cython: language_level=3, boundscheck=False, wraparound=False
"""Native fast path of the memcache reply parser.

Owns one function, `scan_values`, which the pure-Python `ResponseParser`
(`_proto.py`) calls at the start of a ``VALUE`` record: it consumes a run of
complete, well-formed ``VALUE <key> <flags> <bytes>[ <cas>]\\r\\n<data>\\r\\n``
records and stops at the first thing that is not one (the ``END`` line, an
incomplete record, anything malformed or over a limit, a key over 250
bytes). Everything it stops at is then handled, and diagnosed, by the
Python parser, so this module never raises protocol errors and the parser's
behaviour is the same with or without it. Stateless; no lifecycle.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from cpython.long cimport PyLong_FromUnsignedLongLong


cdef inline Py_ssize_t _digits(const unsigned char *p, Py_ssize_t i, Py_ssize_t end,
                               unsigned long long *out) noexcept:
    """Parse 1 to 19 decimal digits at i; the index after them, or -1."""
    cdef unsigned long long v = 0
    cdef Py_ssize_t start = i
    cdef unsigned char c
    while i < end:
        c = p[i]
        if c < 48 or c > 57:
            break
        v = v * 10 + <unsigned long long>(c - 48)
        i += 1
    if i == start or i - start > 19:
        return -1
    out[0] = v
    return i


def scan_values(bytes buf, Py_ssize_t pos, Py_ssize_t max_value, list items):
    """Append ``(key, flags, value, cas or None)`` to `items` for each complete
    well-formed VALUE record of `buf` from `pos`; return the position after
    the last one consumed (`pos` itself when the first is not one)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t i, k0, k1, start, stop
    cdef unsigned long long flags, size, cas
    cdef bint has_cas
    cdef object flags_obj, cas_obj
    while end - pos >= 13:       # "VALUE k 0 0\r\n" + "\r\n"
        if (p[pos] != 86 or p[pos + 1] != 65 or p[pos + 2] != 76 or p[pos + 3] != 85
                or p[pos + 4] != 69 or p[pos + 5] != 32):
            break
        i = k0 = pos + 6
        while i < end and p[i] > 32 and p[i] != 127:
            i += 1
        k1 = i
        if k1 == k0 or k1 - k0 > 250 or i >= end or p[i] != 32:
            break
        i = _digits(p, i + 1, end, &flags)
        if i < 0 or i >= end or p[i] != 32 or flags > 0xFFFFFFFF:
            break
        i = _digits(p, i + 1, end, &size)
        if i < 0 or i >= end:
            break
        has_cas = False
        cas = 0
        if p[i] == 32:
            i = _digits(p, i + 1, end, &cas)
            if i < 0 or i >= end:
                break
            has_cas = True
        if i + 1 >= end or p[i] != 13 or p[i + 1] != 10:
            break
        if size > <unsigned long long>max_value:
            break
        start = i + 2
        stop = start + <Py_ssize_t>size
        if stop + 2 > end or p[stop] != 13 or p[stop + 1] != 10:
            break
        flags_obj = 0 if flags == 0 else PyLong_FromUnsignedLongLong(flags)
        cas_obj = PyLong_FromUnsignedLongLong(cas) if has_cas else None
        PyList_Append(items, (PyBytes_FromStringAndSize(<const char *>p + k0, k1 - k0), flags_obj,
                              PyBytes_FromStringAndSize(<const char *>p + start, stop - start), cas_obj))
        pos = stop + 2
    return pos
