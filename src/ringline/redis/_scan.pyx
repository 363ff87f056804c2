# cython: language_level=3, boundscheck=False, wraparound=False
"""Native vetting scanner of RESP2 replies for the hiredis path.

Owns one function, `vetted_end`, which the Redis client calls before it
feeds bytes to ``hiredis.Reader``. hiredis cannot be bounded from outside
(it preallocates announced arrays and keeps a partial reply's objects), so
it is only ever given *complete* replies that this scanner vouches for: well
formed, RESP2 only (``+ - : $ *``), in canonical form (integers and lengths
without leading zeros, 64-bit integers), within every limit of the Python
`Parser` (max_depth, max_elements, max_bulk, max_line, max_reply_bytes, with
the same accounting: the reply's wire bytes, AGGREGATE_COST per non-empty
aggregate, SCALAR_COST per element of an aggregate, and for elements that
are empty aggregates or errors AGGREGATE_COST or ERROR_COST in place of
SCALAR_COST), and not a top-level bulk of
``big_bulk`` bytes or more (those go zero-copy through our parser).

It stops at the first reply it does not vouch for (incomplete, unusual,
malformed, over a limit) and returns the position of that reply; the
client hands it to the Python parser, which parses it or raises the
ProtocolError naming what is wrong. So hiredis never holds partial state,
never sees input outside those bounds, and both parser paths give the same
values and the same errors. Stateless; never raises.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

cdef enum:
    MAX_STACK = 128

# keep in step with ringline.redis._resp
cdef long long SCALAR_COST = 64
cdef long long AGGREGATE_COST = 256
cdef long long ERROR_COST = 512


cdef inline Py_ssize_t _line_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n,
                                 Py_ssize_t bound) noexcept nogil:
    """Index of the CR of the CRLF ending the line whose content starts at
    i, or -1: no CRLF (yet), a bare CR or LF, or longer than bound."""
    cdef unsigned char c
    if bound > n:
        bound = n
    while i < bound:
        c = p[i]
        if c == 13:
            if i + 1 < n and p[i + 1] == 10:
                return i
            return -1
        if c == 10:
            return -1
        i += 1
    return -1


cdef inline int _canonical(const unsigned char *p, Py_ssize_t i, Py_ssize_t e,
                           bint allow_minus, long long *out) noexcept nogil:
    """Parse p[i:e] as -?(0|[1-9][0-9]{0,17}); 0 on success."""
    cdef bint neg = False
    cdef long long v = 0
    if allow_minus and i < e and p[i] == 45:
        neg = True
        i += 1
    if i >= e or e - i > 18:
        return -1
    if p[i] == 48 and (e - i > 1 or neg):
        return -1
    while i < e:
        if p[i] < 48 or p[i] > 57:
            return -1
        v = v * 10 + (p[i] - 48)
        i += 1
    out[0] = -v if neg else v
    return 0


def vetted_end(object buf, Py_ssize_t max_depth, long long max_elements,
               long long max_bulk, Py_ssize_t max_line, long long max_reply_bytes,
               long long big_bulk):
    """The position after the last complete reply of buf (from its start)
    that hiredis may parse (see the module docstring); 0 when the first one
    is not such a reply."""
    cdef Py_buffer pb
    PyObject_GetBuffer(buf, &pb, PyBUF_SIMPLE)
    cdef Py_ssize_t r
    try:
        r = _scan(<const unsigned char *>pb.buf, pb.len, max_depth, max_elements,
                  max_bulk, max_line, max_reply_bytes, big_bulk)
    finally:
        PyBuffer_Release(&pb)
    return r


cdef Py_ssize_t _scan(const unsigned char *p, Py_ssize_t n, Py_ssize_t max_depth,
                      long long max_elements, long long max_bulk, Py_ssize_t max_line,
                      long long max_reply, long long big_bulk) noexcept nogil:
    cdef long long remaining[MAX_STACK]
    cdef Py_ssize_t last = 0, pos = 0, start, e, depth, j
    cdef long long used, v, cost
    cdef unsigned char t
    if max_depth > MAX_STACK:
        max_depth = MAX_STACK
    while pos < n:
        depth = 0
        used = 0
        while True:                 # one element of the reply starting at last
            start = pos
            if pos >= n:
                return last
            t = p[pos]
            e = _line_end(p, pos + 1, n, pos + max_line + 1)
            if e < 0:
                return last
            cost = SCALAR_COST
            if t == 43:                                     # + simple string
                pos = e + 2
            elif t == 45:                                   # - error
                for j in range(pos + 1, e):
                    if p[j] >= 128:
                        return last
                cost = ERROR_COST
                pos = e + 2
            elif t == 58:                                   # : integer
                if _canonical(p, pos + 1, e, True, &v) != 0:
                    return last
                pos = e + 2
            elif t == 36:                                   # $ bulk
                if e == pos + 3 and p[pos + 1] == 45 and p[pos + 2] == 49:
                    pos = e + 2
                else:
                    if _canonical(p, pos + 1, e, False, &v) != 0 or v > max_bulk:
                        return last
                    if depth == 0 and v >= big_bulk:
                        return last
                    if e + 2 + v + 2 > n:
                        return last
                    if p[e + 2 + v] != 13 or p[e + 3 + v] != 10:
                        return last
                    pos = e + 4 + v
            elif t == 42:                                   # * array
                if e == pos + 3 and p[pos + 1] == 45 and p[pos + 2] == 49:
                    pos = e + 2
                else:
                    if (_canonical(p, pos + 1, e, False, &v) != 0 or v > max_elements
                            or v > <long long>4294967295LL):
                        return last
                    pos = e + 2
                    if v > 0:
                        if depth >= max_depth:
                            return last
                        # an element of its parent too (SCALAR_COST for the slot)
                        used += pos - start + AGGREGATE_COST + (SCALAR_COST if depth else 0)
                        if used > max_reply:
                            return last
                        remaining[depth] = v
                        depth += 1
                        continue
                    cost = AGGREGATE_COST
            else:
                return last
            # a value is complete
            if depth == 0:
                break
            used += pos - start + cost
            if used > max_reply:
                return last
            while depth > 0:
                remaining[depth - 1] -= 1
                if remaining[depth - 1]:
                    break
                depth -= 1
            if depth == 0:
                break
        last = pos
    return last
