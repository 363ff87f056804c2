# File-descriptor identity guard for the sock_* operations (invariant 10: no
# operation outlives its file descriptor's identity).
#
# Owns: the loop's registry of pending sock_* operations, by fd number
# (LoopCore.sock_ops: fd -> [_SockOp]), the list of those queued since the
# last submission (LoopCore.sock_new) and the time of the last full check.
#
# Problem: user code may close a socket while one of its sock_* operations is
# pending; the number is then free and the next socket may get it. Drivers
# file operations by number: the poll driver would run the old operation
# against the new socket (the old waiter reads the new socket's bytes, an old
# sendall writes into it), and an io_uring operation keeps the closed file
# open (its peer sees no EOF). asyncio is the reference for what is observed:
# the old waiter keeps waiting (until it is cancelled), the new socket gets all
# of its bytes, the old peer sees EOF at once.
#
# Rule: an operation whose socket no longer owns its fd number (fileno() is
# -1 or another number) is *orphaned*: taken out of the registry, its SQE made
# a NOP if the driver has not read it yet (LoopCore._cancel_for_close), else
# cancelled; its
# completion then only releases what it holds (a bounce buffer, a buffer
# export, an accepted fd) and never touches the future. Checked:
#   - when a new owner appears for fd N (_fd_claim): a sock_* call with another
#     socket object, a transport, datagram transport, listener or Conn created
#     on N, add_reader/add_writer on N, the signal socket -- before the new
#     owner's first operation is queued, so the driver sees the cancel first;
#   - before every submission, for the operations queued since the previous
#     one (their SQE still in the SQ: voided, never run on a reused number);
#   - all of the registry at most once per _SCAN_INTERVAL (scaled with its
#     size) and, when the loop is about to block, no later than that: this
#     releases the closed file on io_uring so the peer sees EOF.
# Cost: nothing unless sock_* operations are pending; transports and Conns
# only test `if loop.sock_ops` once when created.

cdef double _SCAN_INTERVAL = 0.001       # s between full checks, at least
cdef double _SCAN_PER_ENTRY = 1e-6       # s added per registered fd


cdef class _SockOp(_Op):
    """An operation of the sock_* API, filed under its fd while in flight."""
    cdef object sock
    cdef bint filed          # in loop.sock_ops
    cdef bint orphaned       # its socket gave up the fd: drop the result

    cdef int complete(self, int res, uint32_t flags) except -1:
        try:
            if self.orphaned:
                self._release(res)
            else:
                self._result(res, flags)
        finally:
            if self.filed and not self.inflight:
                _sock_op_unfile(self)
        return 0

    cdef int _result(self, int res, uint32_t flags) except -1:
        return 0

    cdef int _release(self, int res) except -1:
        """Orphaned: free what the operation holds; the future is left alone."""
        return 0


cdef inline bint _sock_owns(sock, int fd):
    """Does this socket object still own fd (not closed, not detached)?"""
    try:
        return sock.fileno() == fd
    except Exception:
        return True          # a stand-in we cannot ask: assume it does


cdef int _sock_op_queued(LoopCore loop, _SockOp op) except -1:
    """Call right before queueing op's SQE (first submission or a retry)."""
    cdef list ops
    if not op.filed:
        if loop.sock_ops:
            _fd_claim(loop, op.fd, op.sock)
        ops = loop.sock_ops.get(op.fd)
        if ops is None:
            loop.sock_ops[op.fd] = [op]
        else:
            ops.append(op)
        op.filed = True
    loop.sock_new.append(op)
    return 0


cdef int _sock_op_unfile(_SockOp op) except -1:
    cdef dict reg = op.loop.sock_ops
    op.filed = False
    ops = reg.get(op.fd)
    if ops is not None:
        try:
            (<list>ops).remove(op)
        except ValueError:
            pass
        if not ops:
            del reg[op.fd]
    return 0


cdef int _sock_op_orphan(LoopCore loop, _SockOp op) except -1:
    op.orphaned = True
    if op.filed:
        _sock_op_unfile(op)
    if op.inflight:
        loop._cancel_for_close(op)
    return 0


cdef int _fd_claim(LoopCore loop, int fd, sock) except -1:
    """A new owner (sock, or None for a bare fd) takes fd: orphan what is
    still filed under it for a socket that gave the number up. Call only when
    loop.sock_ops is not empty (the callers test it: that is the whole cost
    of this guard on paths that do not use sock_*)."""
    ops = loop.sock_ops.get(fd)
    if ops is None:
        return 0
    if (<_SockOp>(<list>ops)[0]).sock is sock and len(<list>ops) == 1:
        return 0
    for op in list(<list>ops):
        if (<_SockOp>op).sock is not sock and not _sock_owns((<_SockOp>op).sock, fd):
            _sock_op_orphan(loop, <_SockOp>op)
    return 0


def _fd_claim_py(LoopCore loop, int fd, sock=None):
    """_fd_claim for the Python side (_loop.py, _native.py)."""
    if loop.sock_ops:
        _fd_claim(loop, fd, sock)


cdef int _sock_ops_check_new(LoopCore loop) except -1:
    """Before a submission: orphan the operations queued since the previous
    one whose socket was closed meanwhile (their SQE is voided in place)."""
    cdef list new = loop.sock_new
    cdef _SockOp op
    loop.sock_new = []
    for o in new:
        op = <_SockOp>o
        if op.filed and op.inflight and not _sock_owns(op.sock, op.fd):
            _sock_op_orphan(loop, op)
    return 0


cdef long long _sock_ops_scan(LoopCore loop, long long timeout_ns) except -2:
    """Before a wait, with operations registered: check all of them unless
    the last check is recent; a wait that would block past the next check is
    shortened to it. Returns the (possibly shortened) timeout."""
    cdef double now = rl_monotonic()
    cdef double interval = _SCAN_INTERVAL + _SCAN_PER_ENTRY * len(loop.sock_ops)
    cdef double left = loop.sock_scan_at + interval - now
    cdef long long left_ns
    cdef _SockOp op
    if left > 0:
        if timeout_ns != 0:
            left_ns = <long long>(left * 1e9) + 1
            if timeout_ns < 0 or left_ns < timeout_ns:
                return left_ns
        return timeout_ns
    loop.sock_scan_at = now
    for fd, ops in list(loop.sock_ops.items()):
        for o in list(<list>ops):
            op = <_SockOp>o
            if not op.inflight:
                _sock_op_unfile(op)       # its SQE could not be queued
            elif not _sock_owns(op.sock, fd):
                _sock_op_orphan(loop, op)
    return timeout_ns
