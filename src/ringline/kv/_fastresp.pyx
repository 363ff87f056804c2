# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""ringline.kv's native request path: RESP request scanning, and GET / plain
SET served straight from the keyspace's dict with the replies of a whole
receive batch encoded into one buffer.

Owns:
  Scanner   the native twin of resp.RequestParser: `feed(data)` has the same
            contract (complete commands at the start of data, bytes used,
            `want`, `error`) and the same bounds and error texts (max_bulk,
            max_args, max_inline, max_request); resp.py stays the reference
            and tests/kv/test_kv_fastresp.py compares both on random,
            truncated and malformed input. The quote rules of inline commands
            are resp._split_inline's (called for the line; inline commands are
            not a hot path), the bounds around them are checked here.
  FastConn  one connection's receive callback (`conn.on_data(fc.on_data)`):
            scans as many complete requests as the accumulator holds and runs
            each in order, GET key and SET key value (no options) natively
            against `Keyspace.data`, every other command through the
            server's `run_one(session, args) -> reply bytes` (Shard.execute
            plus encoding and its error handling); the batch's replies leave
            as one `gate.push(bytes, journal.appended)`. The server's
            `failure_reply(session, args, exc) -> bytes` answers a journal
            failure of a fast SET and a protocol error.

Semantics kept identical to Shard.execute (the fast path only takes the
cases where it is the same code path in effect, everything else falls back):
  - only with one shard (`shard.slots is None`: no MOVED routing);
  - a key with a deadline (in `Keyspace.expires`) goes through execute (lazy
    expiry and its counter), a non-string value too (WRONGTYPE);
  - SET stores, drops nothing else (no deadline: checked above), counts
    `Keyspace.dirty`, and is journalled through `Shard.on_write(args)` as
    execute does, or, when on_write is the server's own journal hook, as a
    record framed here (see "the batch's journal records" below);
  - `Shard.commands_processed` counts fast commands too (added per batch);
  - a protocol error: the commands before it run and are answered, then the
    error reply, then the connection closes (as the Python path did); QUIT
    stops the batch;
  - on a replica (`shard.readonly`) SET always goes through execute (READONLY);
  - run_one may return a gate.Deferred (WAIT) instead of bytes: the replies
    so far are pushed, then the Deferred holds its place in the gate;
  - REPLICATE sets `session.takeover` (a repl.Link): the batch stops after
    it, its replies are pushed, `link.start(gate)` runs, and from then on
    every receive goes to the link (`redirect`);
  - `session.woff` (the write log's offset after the client's last write,
    for WAIT) is set after a batch that journalled a fast SET.

Lifecycle: a FastConn per connection (server.on_accept), a Scanner wherever
requests are parsed. The reply buffer is one per process (the loop thread
runs one callback at a time; a re-entrant call is refused), kept at most
1 MiB between batches.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Size, PyDict_Contains
from cpython.object cimport PyObject
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memchr

from .resp import ProtocolError, _split_inline

cdef enum:
    _MORE = 0       # the next command is incomplete
    _CMD = 1        # an array command: its argument spans are in off/size
    _INLINE = 2     # an inline command: its arguments are in .inline
    _EMPTY = 3      # consumed, nothing to run ('*0', '*-1', a blank line)
    _ERROR = -1     # .error is set

cdef long long _SATURATE = 1LL << 62


cdef inline Py_ssize_t _find_crlf(const char *p, Py_ssize_t pos, Py_ssize_t n) noexcept:
    cdef const char *q
    while pos < n - 1:
        q = <const char *>memchr(p + pos, b'\r', n - 1 - pos)
        if q == NULL:
            return -1
        pos = q - p
        if p[pos + 1] == b'\n':
            return pos
        pos += 1
    return -1


cdef inline bint _digits(const char *p, Py_ssize_t a, Py_ssize_t b) noexcept:
    # bytes.isdigit(): non-empty, ASCII digits only
    if a >= b:
        return False
    while a < b:
        if p[a] < b'0' or p[a] > b'9':
            return False
        a += 1
    return True


cdef class Scanner:
    """Native request parser of one connection (see the module doc)."""

    cdef Py_ssize_t max_bulk, max_args, max_inline, max_request
    cdef Py_ssize_t *off
    cdef Py_ssize_t *size
    cdef Py_ssize_t cap, nargs
    cdef public Py_ssize_t want
    cdef public object error
    cdef object inline

    def __cinit__(self, limits, *args):
        self.max_bulk = limits.max_bulk
        self.max_args = limits.max_args
        self.max_inline = limits.max_inline
        self.max_request = limits.max_request
        self.cap = 8
        self.off = <Py_ssize_t *>malloc(self.cap * sizeof(Py_ssize_t))
        self.size = <Py_ssize_t *>malloc(self.cap * sizeof(Py_ssize_t))
        if self.off == NULL or self.size == NULL:
            raise MemoryError()
        self.want = 0
        self.error = None

    def __dealloc__(self):
        free(self.off)
        free(self.size)

    cdef int _fail(self, str text) except -2:
        self.error = ProtocolError(text)
        return _ERROR

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self.cap * 2
        cdef Py_ssize_t *o = <Py_ssize_t *>realloc(self.off, cap * sizeof(Py_ssize_t))
        if o == NULL:
            raise MemoryError()
        self.off = o
        o = <Py_ssize_t *>realloc(self.size, cap * sizeof(Py_ssize_t))
        if o == NULL:
            raise MemoryError()
        self.size = o
        self.cap = cap
        return 0

    cdef int _next(self, const char *p, Py_ssize_t n, Py_ssize_t *ppos) except -2:
        """Scan the command at *ppos; on _CMD/_INLINE/_EMPTY *ppos moves past
        it, on _MORE it stays (self.want may be set), on _ERROR self.error."""
        cdef Py_ssize_t start = ppos[0], pos = start, eol, a, i, body, end
        cdef long long count, v
        cdef unsigned long long sz
        cdef bint neg
        cdef const char *q
        if p[pos] != b'*':                                  # an inline command
            q = <const char *>memchr(p + pos, b'\n', n - pos)
            if q == NULL:
                if n - pos > self.max_inline:
                    return self._fail("ERR Protocol error: too big inline request")
                return _MORE
            eol = q - p
            if eol - pos > self.max_inline:
                return self._fail("ERR Protocol error: too big inline request")
            end = eol
            if end > pos and p[end - 1] == b'\r':
                end -= 1
            ppos[0] = eol + 1
            try:
                args = _split_inline(PyBytes_FromStringAndSize(p + pos, end - pos))
            except ProtocolError as exc:
                self.error = exc
                return _ERROR
            if not args:
                return _EMPTY
            self.inline = args
            return _INLINE
        eol = _find_crlf(p, pos, n)
        if eol < 0:
            if n - pos > self.max_inline:
                return self._fail("ERR Protocol error: too big mbulk count string")
            return _MORE
        # the count: resp._parse_len (at most 20 characters, '-' then digits, or digits)
        a = pos + 1
        if eol - a == 0 or eol - a > 20:
            return self._fail("ERR Protocol error: invalid multibulk length")
        neg = p[a] == b'-'
        if neg:
            a += 1
        if not _digits(p, a, eol):
            return self._fail("ERR Protocol error: invalid multibulk length")
        v = 0
        for i in range(a, eol):
            v = v * 10 + (p[i] - 48)
            if v > _SATURATE:
                v = _SATURATE
        count = -v if neg else v
        if count > self.max_args:
            return self._fail("ERR Protocol error: invalid multibulk length")
        pos = eol + 2
        if count <= 0:
            ppos[0] = pos
            return _EMPTY
        self.nargs = 0
        while self.nargs < count:
            if pos >= n:
                return self._incomplete(n, start)
            if p[pos] != b'$':
                return self._fail("ERR Protocol error: expected '$', got '%s'"
                                  % chr(<unsigned char>p[pos]))
            eol = _find_crlf(p, pos, n)
            if eol < 0:
                if n - pos > self.max_inline:
                    return self._fail("ERR Protocol error: too big bulk count string")
                return self._incomplete(n, start)
            a = pos + 1
            # Redis' string2ll: digits only, no sign, no leading zero
            if not _digits(p, a, eol) or eol - a > 19 or (p[a] == b'0' and eol - a > 1):
                return self._fail("ERR Protocol error: invalid bulk length")
            sz = 0
            for i in range(a, eol):
                sz = sz * 10 + <unsigned long long>(p[i] - 48)
            if sz > <unsigned long long>self.max_bulk:
                return self._fail("ERR Protocol error: invalid bulk length")
            body = eol + 2
            end = body + <Py_ssize_t>sz
            if end + 2 > n:
                if end + 2 - start > self.max_request:
                    return self._fail("ERR Protocol error: request too big")
                self.want = end + 2 - start
                return self._incomplete(n, start)
            if p[end] != b'\r' or p[end + 1] != b'\n':
                return self._fail("ERR Protocol error: bulk string not terminated by CRLF")
            if self.nargs == self.cap:
                self._grow()
            self.off[self.nargs] = body
            self.size[self.nargs] = <Py_ssize_t>sz
            self.nargs += 1
            pos = end + 2
        if pos - start > self.max_request:
            return self._fail("ERR Protocol error: request too big")
        ppos[0] = pos
        return _CMD

    cdef int _incomplete(self, Py_ssize_t n, Py_ssize_t start) except -2:
        if n - start > self.max_request:
            return self._fail("ERR Protocol error: request too big")
        return _MORE

    cdef int _shrink(self) except -1:
        # after a command with many arguments: back to small span arrays
        cdef Py_ssize_t *o = <Py_ssize_t *>malloc(8 * sizeof(Py_ssize_t))
        cdef Py_ssize_t *z = <Py_ssize_t *>malloc(8 * sizeof(Py_ssize_t))
        if o == NULL or z == NULL:
            free(o)
            free(z)
            return 0                    # keep the big ones
        free(self.off)
        free(self.size)
        self.off = o
        self.size = z
        self.cap = 8
        return 0

    cdef list _args(self, const char *p, int kind):
        cdef list out
        cdef Py_ssize_t i
        if kind == _INLINE:
            out = self.inline
            self.inline = None
            return out
        out = [PyBytes_FromStringAndSize(p + self.off[i], self.size[i])
               for i in range(self.nargs)]
        return out

    def feed(self, data):
        """resp.RequestParser.feed's contract: (commands, bytes used); on a
        malformed request the commands before it and len(data), with
        `error` set."""
        cdef Py_buffer buf
        cdef Py_ssize_t pos = 0, start, n
        cdef const char *p
        cdef int r
        cdef list cmds = []
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            p = <const char *>buf.buf
            n = buf.len
            self.want = 0
            while pos < n:
                start = pos
                r = self._next(p, n, &pos)
                if r == _MORE:
                    break
                if r == _ERROR:
                    return cmds, n
                if r != _EMPTY:
                    cmds.append(self._args(p, r))
            return cmds, pos
        finally:
            PyBuffer_Release(&buf)


# -- the batch reply buffer (one per process) ---------------------------------

cdef char *_out = NULL
cdef Py_ssize_t _out_len = 0, _out_cap = 0
cdef bint _busy = False
cdef Py_ssize_t _KEEP = 1 << 20


cdef int _reserve(Py_ssize_t extra) except -1:
    global _out, _out_cap
    cdef Py_ssize_t need = _out_len + extra, cap
    cdef char *b
    if need <= _out_cap:
        return 0
    cap = _out_cap * 2 if _out_cap else 16384
    while cap < need:
        cap *= 2
    b = <char *>realloc(_out, cap)
    if b == NULL:
        raise MemoryError()
    _out = b
    _out_cap = cap
    return 0


cdef inline int _put(const char *s, Py_ssize_t k) except -1:
    global _out_len
    if _out_len + k > _out_cap:
        _reserve(k)
    memcpy(_out + _out_len, s, k)
    _out_len += k
    return 0


cdef int _put_bulk(const char *s, Py_ssize_t k) except -1:
    # $<k>\r\n<s>\r\n
    global _out_len
    cdef char digits[24]
    cdef Py_ssize_t d = 0, m = k
    cdef char *w
    while True:
        digits[d] = <char>(48 + m % 10)
        d += 1
        m //= 10
        if m == 0:
            break
    if _out_len + k + d + 5 > _out_cap:
        _reserve(k + d + 5)
    w = _out + _out_len
    w[0] = b'$'
    w += 1
    while d:
        d -= 1
        w[0] = digits[d]
        w += 1
    w[0] = b'\r'
    w[1] = b'\n'
    w += 2
    memcpy(w, s, k)
    w += k
    w[0] = b'\r'
    w[1] = b'\n'
    _out_len = (w + 2) - _out
    return 0


# -- the batch's journal records (one buffer per process, like the replies) ----
#
# A fast SET is journalled as Journal.append would frame it (u32 length, u32
# CRC-32 of the payload, little-endian; the payload is the RESP array of the
# command as received, as encode_command writes it), collected for the batch
# and handed over with one Journal.append_framed(records, count) before any
# other command runs and at the end of the batch, so the journal's order is
# the execution order. Only when the shard's on_write is the server's own
# journal hook (`rec_hook`): any other hook gets every write itself.

cdef char *_rec = NULL
cdef Py_ssize_t _rec_len = 0, _rec_cap = 0
cdef long _rec_count = 0
cdef unsigned int _crc_table[256]


cdef void _crc_init() noexcept:
    cdef unsigned int c, i, k
    for i in range(256):
        c = i
        for k in range(8):
            c = (c >> 1) ^ 0xEDB88320U if c & 1 else c >> 1
        _crc_table[i] = c


_crc_init()


cdef unsigned int _crc32(const unsigned char *p, Py_ssize_t n) noexcept:
    # zlib's crc32 (IEEE 802.3, reflected), from 0
    cdef unsigned int crc = 0xFFFFFFFFU
    cdef Py_ssize_t i
    for i in range(n):
        crc = _crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFU


def crc32(data):
    """CRC-32 of a bytes-like object, as zlib.crc32(data) (for the tests)."""
    cdef Py_buffer buf
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        return _crc32(<const unsigned char *>buf.buf, buf.len)
    finally:
        PyBuffer_Release(&buf)


cdef inline char *_put_u32(char *w, unsigned int v) noexcept:
    w[0] = <char>(v & 0xFF)
    w[1] = <char>((v >> 8) & 0xFF)
    w[2] = <char>((v >> 16) & 0xFF)
    w[3] = <char>((v >> 24) & 0xFF)
    return w + 4


cdef inline char *_put_bulk_at(char *w, const char *s, Py_ssize_t k) noexcept:
    cdef char digits[24]
    cdef Py_ssize_t d = 0, m = k
    while True:
        digits[d] = <char>(48 + m % 10)
        d += 1
        m //= 10
        if m == 0:
            break
    w[0] = b'$'
    w += 1
    while d:
        d -= 1
        w[0] = digits[d]
        w += 1
    w[0] = b'\r'
    w[1] = b'\n'
    w += 2
    memcpy(w, s, k)
    w += k
    w[0] = b'\r'
    w[1] = b'\n'
    return w + 2


cdef int _record3(const char *p, Py_ssize_t *off, Py_ssize_t *size) except -1:
    # one framed record of a 3-argument command
    global _rec, _rec_len, _rec_cap, _rec_count
    cdef Py_ssize_t need = 8 + 4 + 3 * 26 + size[0] + size[1] + size[2], cap
    cdef char *b
    cdef char *w
    cdef char *payload
    if _rec_len + need > _rec_cap:
        cap = _rec_cap * 2 if _rec_cap else 16384
        while cap < _rec_len + need:
            cap *= 2
        b = <char *>realloc(_rec, cap)
        if b == NULL:
            raise MemoryError()
        _rec = b
        _rec_cap = cap
    payload = w = _rec + _rec_len + 8
    memcpy(w, b"*3\r\n", 4)
    w += 4
    w = _put_bulk_at(w, p + off[0], size[0])
    w = _put_bulk_at(w, p + off[1], size[1])
    w = _put_bulk_at(w, p + off[2], size[2])
    _put_u32(_put_u32(_rec + _rec_len, <unsigned int>(w - payload)),
             _crc32(<const unsigned char *>payload, w - payload))
    _rec_len = w - _rec
    _rec_count += 1
    return 0


cdef int _flush_records(object journal) except -1:
    global _rec_len, _rec_count, _rec, _rec_cap
    if _rec_count == 0:
        return 0
    data = PyBytes_FromStringAndSize(_rec, _rec_len)
    count = _rec_count
    _rec_len = 0
    _rec_count = 0
    if _rec_cap > _KEEP:
        free(_rec)
        _rec = NULL
        _rec_cap = 0
    journal.append_framed(data, count)
    return 0


cdef inline bint _is3(const char *s, char a, char b, char c) noexcept:
    # ASCII case-insensitive compare of a 3-byte command name (bytes.lower)
    return (s[0] | 0x20) == a and (s[1] | 0x20) == b and (s[2] | 0x20) == c


cdef class FastConn(Scanner):
    """One connection's native receive callback (see the module doc)."""

    cdef object shard, session, gate, journal, run_one, failure_reply, need_at_least
    cdef object rec_journal, rec_hook, redirect
    cdef bint readonly

    def __init__(self, limits, shard, session, gate, journal, run_one, failure_reply,
                 need_at_least, rec_journal=None, rec_hook=None):
        self.rec_journal = rec_journal
        self.rec_hook = rec_hook
        self.readonly = shard.readonly      # a replica's: fixed before it accepts
        self.shard = shard
        self.session = session
        self.gate = gate
        self.journal = journal
        self.run_one = run_one
        self.failure_reply = failure_reply
        self.need_at_least = need_at_least

    def on_data(self, view):
        """The Conn.on_data callback: bytes consumed, or need_at_least(n)."""
        global _busy, _out, _out_len, _out_cap
        cdef Py_buffer buf
        if self.redirect is not None:       # a replication link took the connection
            return self.redirect(view)
        if _busy:
            raise RuntimeError("ringline.kv: re-entrant request batch")
        PyObject_GetBuffer(view, &buf, PyBUF_SIMPLE)
        _busy = True
        _out_len = 0
        try:
            return self._batch(<const char *>buf.buf, buf.len)
        finally:
            _busy = False
            PyBuffer_Release(&buf)
            if self.cap > 1024:
                self._shrink()
            if _out_cap > _KEEP:
                free(_out)
                _out = NULL
                _out_cap = 0

    cdef int _push_out(self) except -1:
        # the replies encoded so far leave as one push, tagged with the
        # write log's count (0 when the policy does not gate)
        global _out_len
        if _out_len:
            journal = self.journal
            self.gate.push(PyBytes_FromStringAndSize(_out, _out_len),
                           journal.appended if journal is not None else 0)
            _out_len = 0
        return 0

    cdef object _batch(self, const char *p, Py_ssize_t n):
        cdef Py_ssize_t pos = 0, start, k
        cdef int r = _MORE, proto
        cdef long fast_cmds = 0, fast_sets = 0
        cdef PyObject *v
        cdef bint fast, fast_set, closing = False, records, wrote = False
        cdef bint takeover = False
        shard = self.shard
        session = self.session
        fast = shard.slots is None
        fast_set = not self.readonly
        ks = shard.ks
        data = ks.data
        expires = ks.expires
        on_write = shard.on_write
        proto = session.proto
        rec_journal = self.rec_journal
        records = (on_write is not None and on_write is self.rec_hook
                   and rec_journal.failed is None)
        self.want = 0
        try:
            while pos < n:
                start = pos
                r = self._next(p, n, &pos)
                if r == _MORE:
                    break
                if r == _ERROR:
                    break
                if r == _EMPTY:
                    continue
                if fast and r == _CMD and self.size[0] == 3:
                    if self.nargs == 2 and _is3(p + self.off[0], b'g', b'e', b't'):
                        key = PyBytes_FromStringAndSize(p + self.off[1], self.size[1])
                        if not (PyDict_Size(expires) and PyDict_Contains(expires, key)):
                            v = PyDict_GetItem(data, key)
                            if v == NULL:
                                if proto == 3:
                                    _put(b"_\r\n", 3)
                                else:
                                    _put(b"$-1\r\n", 5)
                                fast_cmds += 1
                                continue
                            if type(<object>v) is bytes:
                                _put_bulk(PyBytes_AS_STRING(<object>v),
                                          PyBytes_GET_SIZE(<object>v))
                                fast_cmds += 1
                                continue
                    elif self.nargs == 3 and fast_set and _is3(p + self.off[0], b's', b'e', b't'):
                        key = PyBytes_FromStringAndSize(p + self.off[1], self.size[1])
                        if not (PyDict_Size(expires) and PyDict_Contains(expires, key)):
                            value = PyBytes_FromStringAndSize(p + self.off[2], self.size[2])
                            PyDict_SetItem(data, key, value)
                            fast_sets += 1
                            fast_cmds += 1
                            if records:
                                _record3(p, self.off, self.size)
                                wrote = True
                            elif on_write is not None:
                                args = [PyBytes_FromStringAndSize(p + self.off[0], 3),
                                        key, value]
                                try:
                                    on_write(args)
                                except Exception as exc:
                                    reply = self.failure_reply(session, args, exc)
                                    _put(PyBytes_AS_STRING(reply), PyBytes_GET_SIZE(reply))
                                    continue
                            _put(b"+OK\r\n", 5)
                            continue
                # everything else: Shard.execute through the server's run_one
                if records:
                    _flush_records(rec_journal)
                    if wrote:               # before a WAIT in the same batch runs
                        session.woff = rec_journal.appended
                        wrote = False
                if fast_cmds:
                    shard.commands_processed += fast_cmds
                    ks.dirty += fast_sets
                    fast_cmds = fast_sets = 0
                reply = self.run_one(session, self._args(p, r))
                if type(reply) is bytes:
                    _put(PyBytes_AS_STRING(reply), PyBytes_GET_SIZE(reply))
                else:                       # a reply known later (WAIT): its place
                    self._push_out()
                    self.gate.defer(reply)
                proto = session.proto
                if session.closing:
                    closing = True
                    break
                if session.takeover is not None:
                    takeover = True
                    break
        finally:
            if fast_cmds:
                shard.commands_processed += fast_cmds
                ks.dirty += fast_sets
            if records:
                _flush_records(rec_journal)
        if wrote:
            session.woff = rec_journal.appended
        if takeover:                        # REPLICATE: a replication stream from now on
            self._push_out()
            self.redirect = session.takeover
            self.redirect.start(self.gate)
            return pos
        if r == _ERROR and not closing:
            reply = self.failure_reply(session, None, self.error)
            _put(PyBytes_AS_STRING(reply), PyBytes_GET_SIZE(reply))
            session.closing = closing = True
        self._push_out()
        if closing:
            self.gate.close_after_sent()
            return n
        if pos == 0 and self.want:
            return self.need_at_least(self.want)
        return pos
