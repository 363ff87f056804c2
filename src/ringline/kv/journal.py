"""`Journal`: an append-only log of records with group commit, a CRC per
record, and recovery that stops at the first torn record.

Owns: one journal file (its fd), the records appended since the last commit
(one bytearray), the sequence numbers (`appended`: records handed to
`append`; `synced`: records known to be on disk), the commit schedule and
its counters.

Record format (little-endian): u32 payload length, u32 CRC-32 (zlib's) of the
payload, payload. ringline.kv's payload is the RESP array of the command's
arguments, but the Journal itself treats payloads as opaque bytes.

Group commit: `append` only buffers. The first append after a commit
schedules one commit on the journal's loop (the `loop` argument, else the
loop running at that first append; with no loop at all the owner calls
commit() itself): at the end of the current loop turn (the loop's pre-flush
hook, which runs after every callback of the turn and right before queued
sends go to the kernel), or `interval` seconds later when an interval is
set. A commit writes every buffered record with one write and makes them
durable with one fdatasync (`fsync=False` skips that: the records are then
only in the page cache). At most one fdatasync is in flight: the records
of the turns that pass meanwhile are still written at once, and synced
together as soon as it completes, so a slow disk makes the batches bigger
instead of stalling the loop. Then
`synced` moves to the commit's last record and `on_durable(synced)` runs (on
the loop thread), which is where a ReplyGate cursor releases the replies
that waited for these records.

File I/O (with a loop and `background=True`, the default): the loop's
RingFile (ringline._core, _loop/fileops.pxi) owns the fd and the fdatasync
is an operation of the loop's driver: on io_uring IORING_OP_FSYNC with
IORING_FSYNC_DATASYNC in the ring, submitted with the turn's sends (no
syscall, no thread of ours; one completion wakes the journal); on the poll
backend an fdatasync(2) on the poll driver's helper thread (a C thread: no
GIL hand-off), never on the loop thread. The records themselves are written
by one write(2) in every commit, on the loop thread, before the turn's sends
reach the kernel, even while a sync is in flight: a reply that does not
wait for `on_durable` (policy `none`) is then never out before its record is
in the page cache, so a killed process loses nothing it acknowledged.
`ring_write=True` sends the write through the ring too, linked to its
fdatasync (IORING_OP_WRITE at the end of the O_APPEND file, IOSQE_IO_LINK,
then the FSYNC: one submission, one completion; a short write is continued
by the RingFile): no syscall at all on the loop thread, for owners that
release nothing before `on_durable`. Such a write goes to the kernel with
the turn's sends, or after them while a commit is in flight, and the kernel
may run it after them (on ext4 a buffered write in the ring is handed to an
io_uring worker). Without a loop, or with
`background=False`, commit() writes and syncs with plain syscalls on the
calling thread (it blocks; that is what a caller without a loop wants).

Recovery (`Journal.recover(path, apply)`): reads records from the start,
calls apply(payload) for each good one and stops at the first record that is
incomplete (a torn tail: the process died in the middle of a write) or whose
CRC does not match; the file is truncated to the end of the last good
record, so new appends never follow garbage. Returns (records, bytes
discarded).

Lifecycle: `Journal.open(path, ...)` (after recover) -> append/commit ... ->
close() (commits what is buffered first: synchronously, or, when a commit is
in flight through the loop, right after it, the fd closing once the last
one completed; `closed` tells). A failed write or fsync is fatal to the
journal (`failed` is set, `on_failure(exc)` runs, `append` raises): a
server must not acknowledge writes it cannot persist.

Invariants: `synced <= appended`; records reach the file in append order; a
record's bytes are written by exactly one commit; at most one fdatasync (or,
with `ring_write`, one linked write and fdatasync) is in flight; a commit on
a loop writes the records buffered so far before the turn's sends are
submitted (but with `ring_write`); `on_durable` is called with strictly increasing
values, each only after an fdatasync that started after those records were
written (write(2) returned before the sync is submitted; with `ring_write`
the link orders them in the kernel, or, on a driver without links, the sync
is submitted only once the write completed).
"""
from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from typing import Any, Callable, Optional, Tuple

from ringline._core import RingFile

__all__ = ["Journal", "JournalError", "HEADER"]

HEADER = struct.Struct("<II")
_MAX_RECORD = 1 << 30
_DATASYNC = 1                   # RingFile.write(sync=...): fdatasync after the write


class JournalError(OSError):
    """The journal cannot persist records any more."""


class Journal:
    """An append-only journal file with group commit (see the module doc)."""

    def __init__(self, fd: int, path: str, *, loop: Any = None, fsync: bool = True,
                 interval: Optional[float] = None, background: bool = True,
                 ring_write: bool = False,
                 on_durable: Optional[Callable[[int], None]] = None,
                 on_failure: Optional[Callable[[BaseException], None]] = None) -> None:
        self.fd = fd
        self.path = path
        self.loop = loop
        self.fsync = fsync
        self.interval = interval
        self.background = background
        self.ring_write = ring_write
        self.on_durable = on_durable
        self.on_failure = on_failure
        self.appended = 0
        self.synced = 0
        self._buf = bytearray()
        self._scheduled = False
        self._file: Any = None      # the RingFile, once a commit went through the loop
        self._written = 0           # records in the file (not necessarily synced)
        self._inflight = False      # a commit (a sync, or a ring write) is in flight
        self._target = 0            # ... and the last record it covers
        self._nbytes = 0
        self._t0 = 0.0
        self._closing = False
        self.failed: Optional[BaseException] = None
        # counters (INFO shows them)
        self.commits = 0
        self.bytes_written = 0
        self.sync_seconds = 0.0     # time commits spent writing and syncing
        self.max_batch = 0

    @classmethod
    def open(cls, path: str, **kw: Any) -> "Journal":
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return cls(fd, path, **kw)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    # -- appending ----------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Buffer one record; returns its sequence number (1, 2, ...)."""
        return self.append_framed(HEADER.pack(len(payload), zlib.crc32(payload)) + payload, 1)

    def append_framed(self, records: bytes, count: int) -> int:
        """Buffer count records already framed as append frames them
        (ringline.kv's native request path frames a batch's writes itself);
        returns the last one's sequence number."""
        if self.failed is not None:
            raise JournalError(f"journal {self.path} failed: {self.failed}")
        if self._closing:
            raise JournalError(f"journal {self.path} is closed")
        self._buf += records
        self.appended += count
        if not self._scheduled:
            self._schedule()
        return self.appended

    def _schedule(self) -> None:
        loop = self.loop
        if loop is None:
            try:
                loop = self.loop = asyncio.get_running_loop()
            except RuntimeError:
                return          # no loop: the owner calls commit() itself
        self._scheduled = True
        if self.interval:
            loop.call_later(self.interval, self.commit)
        else:
            loop._at_flush(self.commit)

    def commit(self) -> None:
        """Write everything appended so far and make it durable, then report
        it (at once when synced with a syscall, else when the loop's
        completion arrives). The write is never deferred (but with
        `ring_write`): only the fdatasync waits while another is in flight."""
        self._scheduled = False
        if self.failed is not None:
            return
        ring = self.background and self.loop is not None and self._ring() is not None
        try:
            if ring and self.ring_write:
                if self._buf and not self._inflight:
                    data = self._buf
                    self._buf = bytearray()
                    self._submit(data, self.appended)   # write and fdatasync, linked
                return          # in flight: _committed commits what accumulated meanwhile
            if self._buf:
                data = self._buf
                self._buf = bytearray()
                view = memoryview(data)
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
                self.bytes_written += len(data)
                self._written = self.appended
            if self._written <= self.synced or self._inflight:
                return          # nothing new, or _committed syncs it next
            if not self.fsync:
                self._done(self._written)
            elif ring:
                self._submit(None, self._written)       # the fdatasync alone
            else:
                t0 = time.perf_counter()
                os.fdatasync(self.fd)
                self.sync_seconds += time.perf_counter() - t0
                self._done(self._written)
        except (OSError, RuntimeError, ValueError) as exc:
            self._inflight = False
            self._fail(exc)

    def _submit(self, data: Optional[bytearray], target: int) -> None:
        """One commit through the loop's RingFile, covering the records up
        to target: data written then synced (when fsync), or (data None) the
        fdatasync of what write(2) already wrote."""
        self._inflight = True
        self._target = target
        self._t0 = time.perf_counter()
        if data is None:
            self._nbytes = 0
            self._file.sync(True, self._committed)
        else:
            self._nbytes = len(data)
            self._file.write(data, -1, _DATASYNC if self.fsync else 0, self._committed)

    def _ring(self) -> Any:
        """The RingFile over fd (made at the first commit through the loop);
        None when the loop is not a ringline loop (commits use syscalls)."""
        if self._file is None:
            try:
                self._file = RingFile(self.loop, self.fd)
            except TypeError:
                self.background = False
        return self._file

    def _committed(self, exc: Optional[BaseException]) -> None:
        """The loop's completion of the commit in flight."""
        self._inflight = False
        self.sync_seconds += time.perf_counter() - self._t0
        if exc is not None:
            try:
                self._fail(exc)
            except JournalError:
                pass            # reported through on_failure
        else:
            self.bytes_written += self._nbytes
            self._written = max(self._written, self._target)
            self._done(self._target)
        pending = self.failed is None and (self._buf or self._written > self.synced)
        if self._closing:
            if pending:
                try:
                    self.commit()   # what close() left: after this commit, in order
                except JournalError:
                    pass            # reported through on_failure
            if not self._inflight:
                self._close_file()
        elif pending and not self._scheduled:
            # what was appended (and, but with ring_write, written) while it
            # was in flight: at the end of this turn, with whatever the
            # turn's other callbacks append
            self._scheduled = True
            self.loop._at_flush(self.commit)

    def _fail(self, exc: BaseException) -> None:
        self.failed = exc
        if self.on_failure is not None:
            self.on_failure(exc)
        raise JournalError(f"journal {self.path}: {exc}") from exc

    def _done(self, target: int) -> None:
        if target <= self.synced:
            return
        self.commits += 1
        self.max_batch = max(self.max_batch, target - self.synced)
        self.synced = target
        if self.on_durable is not None:
            self.on_durable(target)

    def close(self) -> None:
        """Commit what is buffered, then close the file: at once, or, when a
        commit is in flight through the loop, after it (the buffered records
        then follow it through the loop, and the fd closes when the last
        completion arrives: `closed`)."""
        if self.fd < 0 or self._closing:
            return
        self._closing = True
        if self._inflight and not self.loop.is_closed():
            if not self.ring_write and self.failed is None:
                self.commit()   # the write now; its sync after the one in flight
            return              # _committed finishes the close
        # (a loop closed meanwhile drained the commit in flight: the kernel
        # is done with it, whoever was to be told)
        self._inflight = False
        try:
            self.background = False
            if self.failed is None:
                self.commit()
        finally:
            self._close_file()

    def _close_file(self) -> None:
        fd, self.fd = self.fd, -1
        if self._file is not None:
            self._file.close()  # nothing in flight: closes the fd now
            self._file = None
        elif fd >= 0:
            os.close(fd)

    def stats(self) -> dict:
        return {"appended": self.appended, "synced": self.synced, "commits": self.commits,
                "bytes_written": self.bytes_written, "max_batch": self.max_batch,
                "sync_seconds": round(self.sync_seconds, 6)}

    # -- recovery -----------------------------------------------------------

    @staticmethod
    def recover(path: str, apply: Callable[[bytes], Any],
                chunk: int = 1 << 20) -> Tuple[int, int]:
        """Replay the good records of path through apply(payload); truncate
        the file after the last good one. Returns (records, bytes dropped).
        A missing file is an empty journal."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0, 0
        try:
            size = os.fstat(fd).st_size
            good = 0            # offset after the last good record
            count = 0
            buf = b""
            base = 0            # file offset of buf[0]
            while True:
                pos = good - base
                avail = len(buf) - pos
                if avail < HEADER.size:
                    need = HEADER.size
                else:
                    length, crc = HEADER.unpack_from(buf, pos)
                    if length > _MAX_RECORD:
                        break
                    need = HEADER.size + length
                if avail < need:
                    more = os.pread(fd, max(chunk, need - avail), base + len(buf))
                    if not more:
                        break
                    buf = buf[pos:] + more
                    base = good
                    continue
                payload = buf[pos + HEADER.size:pos + HEADER.size + length]
                if zlib.crc32(payload) != crc:
                    break
                apply(payload)
                count += 1
                good += HEADER.size + length
            dropped = size - good
            if dropped:
                os.ftruncate(fd, good)
                os.fsync(fd)
            return count, dropped
        finally:
            os.close(fd)
