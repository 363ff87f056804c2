"""How the Journal's commits reach the disk: through the loop's RingFile
(io_uring: IORING_OP_FSYNC in the ring, or the write linked to it with
`ring_write`; poll: the fdatasync on the poll driver's C helper thread), never
a Python thread; group commit with at most one commit in flight, the records
appended meanwhile written together next; failures of the write or the sync
fatal to the journal; close() while a commit is in flight.

Real files on both backends, then the fake ring's synthetic completions."""
from __future__ import annotations

import asyncio
import errno
import os
import threading

import pytest

from ringline.kv.journal import HEADER, Journal, JournalError
from support.fakering import (IORING_OP_FSYNC, IORING_OP_WRITE, IOSQE_IO_LINK,  # noqa: F401
                              file_sqes, floop, turn)



def _records(path):
    got = []
    Journal.recover(str(path), got.append)
    return got


def _frame(payload: bytes) -> bytes:
    import zlib
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


async def _load(j: Journal, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        j.append(b"r%d" % i)
        await asyncio.sleep(0)
    while j.synced < start + n:
        await asyncio.sleep(0.001)


# ---------------------------------------------------------------- real files


@pytest.mark.parametrize("ring_write", [False, True], ids=["write2", "ring-write"])
def test_commits_go_through_the_loop_without_a_python_thread(tmp_path, run, ring_write):
    durable = []
    threads = threading.active_count()

    async def main():
        j = Journal.open(str(tmp_path / "j"), on_durable=durable.append, ring_write=ring_write)
        await _load(j, 50)
        assert threading.active_count() == threads      # no executor, no Python thread
        stats = j._file.stats()
        j.close()
        return stats, j.commits

    stats, commits = run(main)
    assert durable == sorted(set(durable)) and durable[-1] == 50 and len(durable) == commits
    assert stats["syncs"] == commits and stats["pending"] == 0
    assert stats["writes"] == (commits if ring_write else 0)
    assert _records(tmp_path / "j") == [b"r%d" % i for i in range(50)]


def test_without_fsync_the_records_still_reach_the_file(tmp_path, run):
    async def main():
        j = Journal.open(str(tmp_path / "j"), fsync=False, ring_write=True)
        await _load(j, 20)
        j.close()
    run(main)
    assert _records(tmp_path / "j") == [b"r%d" % i for i in range(20)]


def test_background_false_commits_with_syscalls_on_the_loop(tmp_path, run):
    async def main():
        j = Journal.open(str(tmp_path / "j"), background=False)
        j.append(b"a")
        j.commit()                                  # synchronous: durable on return
        assert j.synced == 1 and j._file is None
        j.close()
    run(main)
    assert _records(tmp_path / "j") == [b"a"]


@pytest.mark.parametrize("ring_write", [False, True], ids=["write2", "ring-write"])
def test_close_while_a_commit_is_in_flight(tmp_path, run, ring_write):
    durable = []

    async def main():
        j = Journal.open(str(tmp_path / "j"), on_durable=durable.append, ring_write=ring_write)
        j.append(b"first")
        await asyncio.sleep(0)                      # its commit is submitted
        await asyncio.sleep(0)
        j.append(b"second")
        inflight = j._inflight
        j.close()
        with pytest.raises(JournalError, match="closed"):
            j.append(b"too late")
        if inflight:
            assert not j.closed                     # closes after the commits complete
        while not j.closed:
            await asyncio.sleep(0.001)
        return j.synced

    assert run(main) == 2 and durable[-1] == 2
    assert _records(tmp_path / "j") == [b"first", b"second"]


def test_a_sync_that_fails_in_the_kernel_fails_the_journal(run):
    """fdatasync on a pipe is EINVAL on both backends: the journal fails,
    on_failure runs once, appends raise."""
    failures = []

    async def main():
        r, w = os.pipe()
        j = Journal(w, "<pipe>", on_failure=failures.append)
        j.append(b"x")
        while j.failed is None:
            await asyncio.sleep(0.001)
        with pytest.raises(JournalError, match="failed"):
            j.append(b"y")
        j.close()
        os.close(r)
        return j.synced

    assert run(main) == 0
    assert len(failures) == 1 and failures[0].errno == errno.EINVAL


# ------------------------------------------------ synthetic completions (fake ring)


def test_group_commit_keeps_one_sync_in_flight_and_writes_every_turn(floop, tmp_path):
    """The records of every turn are in the file before that turn's sends
    reach the kernel (a reply that does not wait for the sync never leaves
    before its record is written), while their fdatasync waits for the one
    in flight and then covers them all."""
    path = tmp_path / "j"
    durable = []
    j = Journal.open(str(path), loop=floop, on_durable=durable.append)
    j.append(b"r0")
    turn(floop)
    (s,) = file_sqes(floop)
    assert s["opcode"] == IORING_OP_FSYNC and _records(path) == [b"r0"]   # written first
    for i in (1, 2, 3):                             # the sync is slow: turns go on
        j.append(b"r%d" % i)
        turn(floop)
        assert _records(path) == [b"r%d" % k for k in range(i + 1)]     # written at once
    assert file_sqes(floop) == [] and j.synced == 0  # but no second sync in flight
    floop._fake_complete(s["user_data"], 0)
    turn(floop)
    assert durable == [1]
    (s2,) = file_sqes(floop)                         # one sync for the three others
    assert s2["opcode"] == IORING_OP_FSYNC
    floop._fake_complete(s2["user_data"], 0)
    turn(floop)
    assert durable == [1, 4] and j.max_batch == 3 and j.commits == 2
    assert file_sqes(floop) == []
    j.close()


def test_ring_write_is_linked_to_its_fdatasync_and_short_writes_continue(floop, tmp_path):
    durable = []
    j = Journal.open(str(tmp_path / "j"), loop=floop, on_durable=durable.append,
                     ring_write=True)
    j.append(b"r0")
    j.append(b"r1")
    turn(floop)
    w, s = file_sqes(floop)
    size = 2 * (HEADER.size + 2)
    assert (w["opcode"], s["opcode"]) == (IORING_OP_WRITE, IORING_OP_FSYNC)
    assert w["flags"] & IOSQE_IO_LINK and w["len"] == size and w["enter"] == s["enter"]
    j.append(b"r2")                                   # while in flight
    floop._fake_complete(w["user_data"], 5)           # short: the link breaks
    floop._fake_complete(s["user_data"], -errno.ECANCELED)
    turn(floop)
    w2, s2 = file_sqes(floop)                         # the rest, linked again
    assert w2["len"] == size - 5 and w2["addr"] == w["addr"] + 5 and durable == []
    floop._fake_complete(w2["user_data"], size - 5)
    floop._fake_complete(s2["user_data"], 0)
    turn(floop)
    assert durable == [2] and j.bytes_written == size
    w3, s3 = file_sqes(floop)                         # then r2
    assert w3["len"] == len(_frame(b"r2"))
    floop._fake_complete(w3["user_data"], w3["len"])
    floop._fake_complete(s3["user_data"], 0)
    turn(floop)
    assert durable == [2, 3]
    j.close()


@pytest.mark.parametrize("which", ["write", "sync"])
def test_a_failed_write_or_sync_fails_the_journal(floop, tmp_path, which):
    failures = []
    durable = []
    j = Journal.open(str(tmp_path / "j"), loop=floop, ring_write=True,
                     on_durable=durable.append, on_failure=failures.append)
    j.append(b"r0")
    turn(floop)
    w, s = file_sqes(floop)
    if which == "write":
        floop._fake_complete(w["user_data"], -errno.ENOSPC)
        floop._fake_complete(s["user_data"], -errno.ECANCELED)
    else:
        floop._fake_complete(w["user_data"], w["len"])
        floop._fake_complete(s["user_data"], -errno.EIO)
    turn(floop)
    want = errno.ENOSPC if which == "write" else errno.EIO
    assert [f.errno for f in failures] == [want] and j.failed is failures[0]
    assert durable == [] and j.synced == 0
    with pytest.raises(JournalError):
        j.append(b"more")
    turn(floop)
    assert file_sqes(floop) == []                     # nothing more is tried
    j.close()
