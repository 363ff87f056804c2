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
set. A commit writes every buffered record with one write(2) and makes
them durable with one fdatasync(2) (`fsync=False` skips that: the records are
then only in the page cache). With a loop and `background=True` (the
default) the fdatasync runs on a helper thread while the loop goes on
serving: at most one sync is in flight, and the records appended meanwhile
are written and synced together as soon as it returns, so a slow disk makes
the batches bigger instead of stalling the loop. A fast disk is synced
inline instead: while the last fdatasync took less than `inline_sync`
seconds (default 500 µs; 0: always on the thread) the next one runs in the
commit itself, which saves the thread hand-off (two context switches and a
loop turn per commit: on a busy machine that is most of a commit's latency);
one slower sync sends the following ones to the thread until a sync is fast
again, so the loop never stalls for longer than about one such sync. Then `synced` moves to the
commit's last record and `on_durable(synced)` runs (on the loop thread),
which is where a ReplyGate cursor releases the replies that waited for these
records.

File I/O: plain write(2) from the loop thread and fdatasync(2) on the helper
thread, on both backends: ringline's loop does not expose file operations
through the ring yet (the thread stands in for an IORING_OP_FSYNC; noted in
docs/kv.md).

Recovery (`Journal.recover(path, apply)`): reads records from the start,
calls apply(payload) for each good one and stops at the first record that is
incomplete (a torn tail: the process died in the middle of a write) or whose
CRC does not match; the file is truncated to the end of the last good
record, so new appends never follow garbage. Returns (records, bytes
discarded).

Lifecycle: `Journal.open(path, ...)` (after recover) -> append/commit ... ->
close() (commits what is buffered first). A failed write or fsync is fatal
to the journal (`failed` is set, `on_failure(exc)` runs, `append` raises): a
server must not acknowledge writes it cannot persist.

Invariants: `synced <= appended`; records reach the file in append order; a
record's bytes are written by exactly one commit; at most one fdatasync is
in flight; `on_durable` is called with strictly increasing values, each
only after an fdatasync that started after those records were written.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import struct
import time
import zlib
from typing import Any, Callable, Optional, Tuple

__all__ = ["Journal", "JournalError", "HEADER"]

HEADER = struct.Struct("<II")
_MAX_RECORD = 1 << 30


class JournalError(OSError):
    """The journal cannot persist records any more."""


class Journal:
    """An append-only journal file with group commit (see the module doc)."""

    def __init__(self, fd: int, path: str, *, loop: Any = None, fsync: bool = True,
                 interval: Optional[float] = None, background: bool = True,
                 inline_sync: float = 0.0005,
                 on_durable: Optional[Callable[[int], None]] = None,
                 on_failure: Optional[Callable[[BaseException], None]] = None) -> None:
        self.fd = fd
        self.path = path
        self.loop = loop
        self.fsync = fsync
        self.interval = interval
        self.background = background
        self.inline_sync = inline_sync
        self.last_sync = 0.0        # seconds the last fdatasync took
        self._inflight = False
        self._executor: Any = None
        self.on_durable = on_durable
        self.on_failure = on_failure
        self.appended = 0
        self.synced = 0
        self._buf = bytearray()
        self._scheduled = False
        self.failed: Optional[BaseException] = None
        # counters (INFO shows them)
        self.commits = 0
        self.bytes_written = 0
        self.sync_seconds = 0.0
        self.max_batch = 0

    @classmethod
    def open(cls, path: str, **kw: Any) -> "Journal":
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return cls(fd, path, **kw)

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
        it (at once, or when the background fdatasync returns)."""
        self._scheduled = False
        if not self._buf or self.failed is not None:
            return
        if self._inflight:
            return              # _sync_done commits what accumulated meanwhile
        data = self._buf
        self._buf = bytearray()
        target = self.appended
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            self.bytes_written += len(data)
            if self.fsync and self.background and self.loop is not None \
                    and self.last_sync >= self.inline_sync:
                self._inflight = True
                fut = self.loop.run_in_executor(self._pool(), self._sync_step)
                fut.add_done_callback(lambda f: self._sync_done(f, target))
                return
            if self.fsync:
                self._sync_step()
        except OSError as exc:
            self._fail(exc)
        self._done(target)

    def _timed_sync(self) -> None:
        t0 = time.perf_counter()
        os.fdatasync(self.fd)
        self.sync_seconds += time.perf_counter() - t0

    def _sync_step(self) -> None:
        """One sync (inline or on the thread); how long it took decides
        where the next one runs."""
        t0 = time.perf_counter()
        try:
            self._timed_sync()
        finally:
            self.last_sync = time.perf_counter() - t0

    def _pool(self) -> Any:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="ringline-journal")
        return self._executor

    def _sync_done(self, fut: Any, target: int) -> None:
        self._inflight = False
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            try:
                self._fail(exc)
            except JournalError:
                pass            # reported through on_failure
            return
        self._done(target)
        if self._buf and not self._scheduled:
            self.commit()       # the records appended while the sync ran

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
        """Commit what is buffered (synchronously), stop the sync thread,
        close the file."""
        if self.fd < 0:
            return
        try:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            self._inflight = False
            self.background = False
            if self.failed is None:
                self.commit()
        finally:
            os.close(self.fd)
            self.fd = -1

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
