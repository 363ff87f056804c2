"""RingFile (_loop/fileops.pxi): file writes and syncs as operations of the
loop's driver.

Real files on both backends (io_uring: WRITE linked to FSYNC in one
submission; poll: write(2), then the fsync on the poll driver's helper
thread), including a close while a sync is in flight (the fd stays open
until the completion) and real errors (EBADF from a read-only fd, EINVAL
from fsync on a pipe); then the synthetic completions of the fake ring (no
kernel): short writes continued from the right offset with their sync
linked again, a write error or a sync error ending the request with it, a
zero-byte write as EIO, EINTR retried.
"""
import asyncio
import errno
import gc
import os
import threading

import pytest

from ringline._core import RingFile
from ringline._loop import loop as _loop
from support import BACKENDS
from support.fakering import (IORING_FSYNC_DATASYNC, IORING_OP_FSYNC,  # noqa: F401
                              IORING_OP_WRITE, IOSQE_IO_LINK, file_sqes, floop, turn)

NO_OFFSET = (1 << 64) - 1


def _open(path, flags=os.O_WRONLY | os.O_CREAT | os.O_APPEND):
    return os.open(str(path), flags | os.O_CLOEXEC, 0o644)


# ---------------------------------------------------------------- real files


def test_writes_and_syncs_reach_the_file(tmp_path, run):
    path = tmp_path / "f"

    async def main():
        loop = asyncio.get_running_loop()
        f = RingFile(loop, _open(path))
        await f.write(b"hello ", sync=1)                  # fdatasync
        await f.write(memoryview(b"world\n"), sync=2)     # fsync
        await f.write(bytearray(b"!"))                    # no sync
        await f.sync()
        await f.sync(datasync=False)
        stats = f.stats()
        assert f.close() is True and f.closed and f.fd == -1
        return f.linked, stats

    linked, stats = run(main)
    assert path.read_bytes() == b"hello world\n!"
    assert linked == (os.environ["RINGLINE_BACKEND"] == "io_uring")
    assert stats == {"pending": 0, "writes": 3, "syncs": 4, "short_writes": 0}


def test_positional_writes_and_a_big_one(tmp_path, run):
    path = tmp_path / "f"
    big = os.urandom(3 << 20)

    async def main():
        loop = asyncio.get_running_loop()
        f = RingFile(loop, _open(path, os.O_WRONLY | os.O_CREAT))
        await f.write(big, offset=0, sync=1)
        await f.write(b"XYZ", offset=10, sync=1)
        f.close()

    run(main)
    data = path.read_bytes()
    assert len(data) == len(big) and data[:10] == big[:10] and data[10:13] == b"XYZ"
    assert data[13:] == big[13:]


def test_callback_reports_once_on_the_loop_thread(tmp_path, run):
    async def main():
        loop = asyncio.get_running_loop()
        f = RingFile(loop, _open(tmp_path / "f"))
        got = []
        fut = f.write(b"x" * 1000, sync=1,
                      callback=lambda exc: got.append((exc, threading.get_ident())))
        assert fut is None
        while not got:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        f.close()
        return got

    got = run(main)
    assert got == [(None, threading.get_ident())]


def test_close_during_an_inflight_sync_keeps_the_fd_until_it_completes(tmp_path, run):
    path = tmp_path / "f"

    async def main():
        loop = asyncio.get_running_loop()
        f = RingFile(loop, _open(path))
        fd = f.fd
        fut = f.write(os.urandom(1 << 20), sync=2)
        closed = []
        assert f.close(callback=lambda: closed.append(f.fd)) is False
        # closing, but the number still names our file: nothing new can get it
        assert f.closed and f.fd == fd and f.pending == 1
        assert os.readlink(f"/proc/self/fd/{fd}") == str(path)
        other = os.open(os.devnull, os.O_RDONLY)
        assert other != fd
        os.close(other)
        with pytest.raises(ValueError, match="closed"):
            f.write(b"more")
        await fut                               # the request still completes
        assert closed == [-1] and f.fd == -1 and f.pending == 0
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            target = None
        assert target != str(path)              # closed by the completion

    run(main)
    assert path.stat().st_size == 1 << 20


def test_write_error_is_an_oserror(tmp_path, run):
    path = tmp_path / "f"
    path.write_bytes(b"")

    async def main():
        loop = asyncio.get_running_loop()
        f = RingFile(loop, os.open(str(path), os.O_RDONLY | os.O_CLOEXEC))
        with pytest.raises(OSError) as info:
            await f.write(b"data", sync=1)
        f.close()
        return info.value.errno

    assert run(main) == errno.EBADF


def test_sync_error_is_an_oserror(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        f = RingFile(loop, w)
        errs = []
        for call in (lambda: f.sync(), lambda: f.write(b"through the pipe", sync=1)):
            with pytest.raises(OSError) as info:
                await call()
            errs.append(info.value.errno)
        f.close()
        data = os.read(r, 100)
        os.close(r)
        return errs, data

    errs, data = run(main)
    assert errs == [errno.EINVAL, errno.EINVAL]     # a pipe cannot be synced
    assert data == b"through the pipe"               # the write before the sync happened


def test_requests_are_refused_when_closed_or_empty(tmp_path, run):
    async def main():
        loop = asyncio.get_running_loop()
        f = RingFile(loop, _open(tmp_path / "f"))
        with pytest.raises(ValueError, match="nothing"):
            f.write(b"")
        with pytest.raises(ValueError, match="sync must be"):
            f.write(b"x", sync=3)
        assert f.pending == 0
        await f.write(b"", sync=1)                  # an empty write with a sync is a sync
        assert f.close() is True and f.close() is True
        with pytest.raises(ValueError, match="closed"):
            f.sync()
        with pytest.raises(ValueError):
            RingFile(loop, -1)

    run(main)


def test_a_refused_construction_closes_no_descriptor(run):
    # a RingFile whose constructor raised is still deallocated: it must not
    # close descriptor 0 (its zeroed fd field), which a later epoll or
    # io_uring fd may be using
    async def main():
        loop = asyncio.get_running_loop()
        saved = os.dup(0)
        r, w = os.pipe()
        try:
            os.dup2(r, 0)
            with pytest.raises(ValueError):
                RingFile(loop, -1)
            with pytest.raises(TypeError):
                RingFile(None, r)
            gc.collect()
            assert os.fstat(0).st_ino == os.fstat(r).st_ino
        finally:
            os.dup2(saved, 0)
            for fd in (saved, r, w):
                os.close(fd)

    run(main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_closing_the_loop_with_a_sync_in_flight(tmp_path, backend):
    loop = _loop.Loop(backend=backend)
    f = RingFile(loop, _open(tmp_path / "f"))
    got = []
    f.write(b"x" * 4096, sync=1, callback=got.append)
    loop.call_soon(loop.stop)
    loop.run_forever()                          # submitted
    loop.close()                                # cancels and drains it, calls nobody
    assert got == [] and f.pending == 0 and f.fd >= 0
    with pytest.raises(RuntimeError, match="closed"):
        f.write(b"late")
    assert f.close() is True and f.fd == -1
    assert (tmp_path / "f").stat().st_size in (0, 4096)     # cancelled, or done whole


# ------------------------------------------------ synthetic completions (fake ring)


@pytest.fixture
def ffile(floop, tmp_path):
    f = RingFile(floop, _open(tmp_path / "fake"))
    yield f
    if not f.closed:
        f.close()


def _pair(sq):
    assert [s["opcode"] for s in sq] == [IORING_OP_WRITE, IORING_OP_FSYNC]
    w, s = sq
    assert w["flags"] & IOSQE_IO_LINK and not s["flags"] & IOSQE_IO_LINK
    assert s["enter"] == w["enter"]                 # one submission
    return w, s


def test_write_and_datasync_are_one_linked_submission(floop, ffile):
    got = []
    ffile.write(b"x" * 100, sync=1, callback=got.append)
    turn(floop)
    w, s = _pair(file_sqes(floop))
    assert w["len"] == 100 and w["off"] == NO_OFFSET and w["fd"] == ffile.fd
    assert s["msg_flags"] == IORING_FSYNC_DATASYNC and s["fd"] == ffile.fd
    floop._fake_complete(w["user_data"], 100)
    turn(floop)
    assert got == []                                # the write alone wakes nobody
    floop._fake_complete(s["user_data"], 0)
    turn(floop)
    assert got == [None] and ffile.pending == 0


def test_the_pair_is_not_split_by_a_nearly_full_submission_queue(floop, ffile):
    """One free SQ slot: the write must not go out alone, flagged IO_LINK,
    with its sync in the next submission (the link would then attach to
    whatever came first there)."""
    futs = []

    def fill_then_write():
        floop._queue_nops(63)
        futs.append(ffile.write(b"abc", sync=1))
    floop.call_soon(fill_then_write)
    turn(floop)
    w, s = _pair(file_sqes(floop))              # one enter holds both
    floop._fake_complete(w["user_data"], 3)
    floop._fake_complete(s["user_data"], 0)
    turn(floop)
    assert futs[0].done() and futs[0].result() is None


def test_short_write_resubmits_the_rest_with_its_sync(floop, ffile):
    got = []
    data = bytes(range(100))
    ffile.write(data, offset=1000, sync=2, callback=got.append)
    turn(floop)
    w, s = _pair(file_sqes(floop))
    assert s["msg_flags"] == 0 and w["off"] == 1000   # fsync, not datasync
    floop._fake_complete(w["user_data"], 30)         # short: the kernel breaks the link
    floop._fake_complete(s["user_data"], -errno.ECANCELED)
    turn(floop)
    w2, s2 = _pair(file_sqes(floop))
    assert w2["len"] == 70 and w2["off"] == 1030 and w2["addr"] == w["addr"] + 30
    floop._fake_complete(w2["user_data"], 70)
    floop._fake_complete(s2["user_data"], 0)
    turn(floop)
    assert got == [None] and ffile.short_writes == 1 and ffile.writes == 2


def test_write_error_ends_the_request_with_it(floop, ffile):
    fut = ffile.write(b"abc", sync=1)
    turn(floop)
    w, s = _pair(file_sqes(floop))
    floop._fake_complete(w["user_data"], -errno.ENOSPC)
    floop._fake_complete(s["user_data"], -errno.ECANCELED)
    turn(floop)
    assert fut.done() and fut.exception().errno == errno.ENOSPC
    assert file_sqes(floop) == [] and ffile.pending == 0


def test_sync_error_ends_the_request_with_it(floop, ffile):
    fut = ffile.write(b"abc", sync=1)
    turn(floop)
    w, s = _pair(file_sqes(floop))
    floop._fake_complete(w["user_data"], 3)
    floop._fake_complete(s["user_data"], -errno.EIO)
    turn(floop)
    assert fut.exception().errno == errno.EIO and file_sqes(floop) == []


def test_zero_byte_write_is_eio_and_eintr_is_retried(floop, ffile):
    fut = ffile.write(b"abc")                       # no sync: a lone WRITE
    turn(floop)
    (w,) = file_sqes(floop)
    assert not w["flags"] & IOSQE_IO_LINK
    floop._fake_complete(w["user_data"], -errno.EINTR)
    turn(floop)
    (w2,) = file_sqes(floop)                        # retried, same bytes
    assert w2["len"] == 3 and w2["addr"] == w["addr"]
    floop._fake_complete(w2["user_data"], 0)        # no progress: never spin
    turn(floop)
    assert fut.exception().errno == errno.EIO and file_sqes(floop) == []


def test_close_waits_for_the_last_completion(floop, ffile):
    fd = ffile.fd
    fut = ffile.sync()
    closed = []
    assert ffile.close(callback=lambda: closed.append(True)) is False
    turn(floop)
    (s,) = file_sqes(floop)
    assert s["opcode"] == IORING_OP_FSYNC and s["fd"] == fd
    os.fstat(fd)                                    # still open
    floop._fake_complete(s["user_data"], 0)
    turn(floop)
    assert fut.done() and fut.result() is None and closed == [True] and ffile.fd == -1
