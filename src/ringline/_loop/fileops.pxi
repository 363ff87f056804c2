# _loop/fileops.pxi -- file writes and syncs as operations of the loop's
# driver: what ringline.kv's Journal (and any owner of an append-only file)
# uses instead of write(2) and fdatasync(2) on the loop thread.
#
# Owns: RingFile (one file descriptor whose writes and syncs run through the
# loop's driver, closed only once none of them is in flight), _FileReq (one
# request: write these bytes at this offset, then optionally sync; or a lone
# sync) and _FileOp (one SQE of a request: its WRITE or its FSYNC).
#
# How a request runs, by what the driver can do (a capability bit, never the
# backend's name):
# - linked submissions (RL_CAP_LINKS: io_uring): the WRITE and the FSYNC
#   (IORING_FSYNC_DATASYNC for a datasync) go out as one linked pair in one
#   submission (room for both reserved first: invariant 9); the kernel runs
#   the sync only after the write completed whole. The WRITE is marked quiet
#   (_mark_quiet): nothing waits on it alone, the FSYNC's completion always
#   follows it, so its completion does not end the loop's wait -- the owner
#   is woken once, by the sync.
# - no links (the poll driver): the WRITE first (a plain write(2) in the
#   driver, on the loop thread), its completion submits the FSYNC, which the
#   poll driver runs on its helper thread (_c/pdsync.h): a blocking sync never
#   runs on the loop thread.
# Short writes resubmit the rest from the new offset (and, linked, the sync
# again: a short write breaks the link, the kernel completes the sync with
# -ECANCELED); a zero-byte result for a non-empty write is EIO, never
# progress (invariant 11); -EINTR and -EAGAIN are retried; any other error
# of the write or the sync ends the request with that OSError.
#
# Lifecycle: RingFile(loop, fd) takes ownership of fd -> write() / sync()
# (each: a callback, or the future returned) ... -> close(): the fd is closed
# at once when no request is in flight, else by the completion of the last
# one (close's callback runs then), so an operation never runs against a
# reused fd number (invariant 10). While the loop closes, completions resolve
# nobody (as sock_* calls stay pending): they only release what they hold.
#
# Invariants: a request holds the export of its buffer until the final
# completion of its last operation (invariant 1); its callback or future is
# resolved exactly once (unless the loop closes first); `pending` counts the
# requests in flight. Writes at offset -1 (the file position; O_APPEND: the
# end) reach the file in request order only when issued one at a time: a
# caller that needs order keeps one request in flight (the Journal does).


cdef class _FileOp(_Op):
    """One SQE of a file request (its WRITE, or its FSYNC)."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.req._on_op(self, res)


cdef class _FileReq:
    """One request of a RingFile: write (the rest of) a buffer, then sync;
    or a lone sync (see the file notes)."""

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False

    @cython.final
    cdef int _round(self) except -1:
        """Submit what is left: the rest of the write (with its sync, linked,
        when the driver links), or the sync alone."""
        cdef RingFile f = self.file
        cdef LoopCore loop = f.loop
        cdef _FileOp op, sop = None
        cdef io_uring_sqe *sqe
        cdef size_t rest = 0
        cdef uint64_t off
        cdef bint write, sync
        if self.has_view:
            rest = <size_t>self.view.len - self.done
        write = rest > 0
        sync = self.sync != 0 and (rest == 0 or (loop.drv.caps & RL_CAP_LINKS) != 0)
        # everything that can fail comes before the first SQE: a linked
        # write must never be queued without the sync it links to
        if sync:
            sop = _FileOp.__new__(_FileOp)
            sop.loop = loop
            sop.fd = f.fd
            sop.req = self
            sop.is_sync = True
        if write:
            op = _FileOp.__new__(_FileOp)
            op.loop = loop
            op.fd = f.fd
            op.req = self
        if loop.nfree < 2:
            loop._grow_ops()
        if write and sync:
            loop._sq_reserve(2)
        self.sent_write = write
        self.sent_sync = sync
        self.wres = 0
        self.sres = 0
        if write:
            off = self.pos if self.pos == <uint64_t>-1 else self.pos + self.done
            sqe = loop._submit(op, IORING_OP_WRITE, f.fd, <char*>self.view.buf + self.done,
                               rest, off)
            self.nops += 1
            f.writes += 1
            if sync:
                sqe.flags |= IOSQE_IO_LINK
                loop._mark_quiet(op, rest if rest < RL_MAX_IO_LEN else RL_MAX_IO_LEN)
        if sync:
            sqe = loop._submit(sop, IORING_OP_FSYNC, f.fd, NULL, 0, 0)
            if self.sync == 1:
                sqe.fsync_flags = IORING_FSYNC_DATASYNC
            self.nops += 1
            f.syncs += 1
        return 0

    @cython.final
    cdef int _again(self) except -1:
        """The next round, from a completion: a round that cannot be
        submitted (the loop's ring is closing) ends the request with that
        error instead of leaving it pending."""
        try:
            self._round()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            return self._finish(EIO, exc)
        return 0

    @cython.final
    cdef int _on_op(self, _FileOp op, int res) except -1:
        cdef RingFile f = self.file
        if op.is_sync:
            self.sres = res
        else:
            self.wres = res
        self.nops -= 1
        if self.nops > 0:
            return 0            # the other half of the linked pair is still out
        if f.loop.closing:
            return self._finish(ECANCELED)
        if self.sent_write:
            res = self.wres
            if res == -EINTR or res == -EAGAIN:
                return self._again()
            if res < 0:
                return self._finish(-res)
            if res == 0:
                return self._finish(EIO)        # no progress on a non-empty write
            self.done += <size_t>res
            if self.done < <size_t>self.view.len:
                f.short_writes += 1
                return self._again()            # the rest (and its sync again)
            if self.sync != 0 and not self.sent_sync:
                return self._again()            # unlinked: now the sync
        if self.sent_sync:
            if self.sres == -EINTR:
                return self._again()
            if self.sres < 0:
                return self._finish(-self.sres)
        return self._finish(0)

    @cython.final
    cdef int _finish(self, int err, exc=None) except -1:
        cdef RingFile f = self.file
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
        cb = self.callback
        fut = self.fut
        self.callback = None
        self.fut = None
        try:
            if f.loop.closing:
                return 0
            if exc is None and err != 0:
                exc = _oserror(err)
            if fut is not None:
                if not fut.done():
                    if exc is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(exc)
            elif cb is not None:
                cb(exc)
        finally:
            f._req_done()
        return 0


cdef class RingFile:
    """A file whose writes and syncs are operations of a ringline loop's
    driver (see the file notes). Takes ownership of fd."""

    def __cinit__(self, LoopCore loop not None, int fd):
        # -1 before anything can raise: a failed construction still runs
        # __dealloc__, which must not close descriptor 0 (the zeroed field)
        self.fd = -1
        if fd < 0:
            raise ValueError('RingFile needs an open file descriptor')
        self.loop = loop
        self.fd = fd

    def __dealloc__(self):
        # reached only with nothing in flight (each request holds its file);
        # loop is None when the constructor was refused (even its argument
        # check, before __cinit__'s body): the fd field was never ours then
        if self.fd >= 0 and self.loop is not None:
            c_close(self.fd)
            self.fd = -1

    @property
    def linked(self):
        """True when a write and its sync go to the kernel as one linked
        pair (the driver links submissions)."""
        return (self.loop.drv.caps & RL_CAP_LINKS) != 0

    @property
    def closed(self):
        return self.fd < 0 or self.closing

    def write(self, data, long long offset=-1, int sync=0, callback=None):
        """Write all of data at offset (-1: at the file position, which
        O_APPEND makes the end), then sync it when sync is 1 (fdatasync) or
        2 (fsync). When it is done (the bytes written, and synced when
        asked), callback(None) runs on the loop thread, or callback(OSError)
        when the write or the sync failed; without a callback, write returns
        a future resolved the same way."""
        cdef _FileReq req = self._request(sync, callback)
        try:
            PyObject_GetBuffer(data, &req.view, PyBUF_SIMPLE)
            req.has_view = True
            if req.view.len == 0 and sync == 0:
                raise ValueError('nothing to write or sync')
            req.pos = <uint64_t>-1 if offset < 0 else <uint64_t>offset
            req._round()
        except BaseException:
            if req.nops == 0:
                self.pending -= 1
            raise
        return req.fut

    def sync(self, bint datasync=True, callback=None):
        """fdatasync (datasync) or fsync the file, reported as write() does."""
        cdef _FileReq req = self._request(1 if datasync else 2, callback)
        try:
            req._round()
        except BaseException:
            if req.nops == 0:
                self.pending -= 1
            raise
        return req.fut

    def close(self, callback=None):
        """Close the file descriptor: at once when no request is in flight
        (returns True), else when the last one completes (returns False;
        callback() runs then, on the loop thread). A closed file takes no
        more requests."""
        if self.fd < 0 or self.closing:
            return self.fd < 0
        self.closing = True
        if self.pending == 0:
            self._close_fd()
            return True
        self.on_closed = callback
        return False

    def stats(self):
        return {'pending': self.pending, 'writes': self.writes, 'syncs': self.syncs,
                'short_writes': self.short_writes}

    @cython.final
    cdef _FileReq _request(self, int sync, callback):
        cdef _FileReq req
        if self.fd < 0 or self.closing:
            raise ValueError('I/O operation on a closed RingFile')
        if self.loop.closing or self.loop._closed:
            raise RuntimeError('Event loop is closed')
        if sync < 0 or sync > 2:
            raise ValueError(f'sync must be 0 (none), 1 (fdatasync) or 2 (fsync), not {sync}')
        req = _FileReq.__new__(_FileReq)
        req.file = self
        req.sync = sync
        req.callback = callback
        if callback is None:
            req.fut = self.loop._new_future()
        self.pending += 1
        return req

    @cython.final
    cdef int _req_done(self) except -1:
        self.pending -= 1
        if self.pending == 0 and self.closing and self.fd >= 0:
            self._close_fd()
            cb = self.on_closed
            self.on_closed = None
            if cb is not None and not self.loop.closing:
                cb()
        return 0

    @cython.final
    cdef int _close_fd(self) except -1:
        cdef int fd = self.fd
        self.fd = -1
        if c_close(fd) < 0 and errno != EINTR:
            raise _oserror(errno)
        return 0
