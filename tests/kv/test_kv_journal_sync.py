"""The journal's adaptive sync: a fast fdatasync runs inline in the commit
(no thread hand-off), a slow one moves the following syncs to the helper
thread until a sync is fast again; records and on_durable stay in order."""
from __future__ import annotations

import asyncio
import threading
import time

from ringline.kv.journal import Journal


class _Disk(Journal):
    delay = 0.0
    threaded = 0

    def _timed_sync(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.threaded += 1
        if self.delay:
            time.sleep(self.delay)
        super()._timed_sync()


def _load(j: Journal, n: int):
    async def main():
        for i in range(n):
            j.append(b"r%d" % i)
            await asyncio.sleep(0)
        while j.synced < n:
            await asyncio.sleep(0.001)
    return main


def test_fast_disk_syncs_inline(tmp_path, run):
    durable = []

    async def main():
        j = _Disk.open(str(tmp_path / "j"), on_durable=durable.append, inline_sync=10.0)
        await _load(j, 50)()
        assert j._executor is None and j.threaded == 0     # never handed to the thread
        j.close()
    run(main)
    assert durable == sorted(set(durable)) and durable[-1] == 50


def test_slow_disk_moves_to_the_thread_and_back(tmp_path, run):
    durable = []

    async def main():
        j = _Disk.open(str(tmp_path / "j"), on_durable=durable.append, inline_sync=0.002)
        j.delay = 0.005                             # slower than inline_sync
        await _load(j, 20)()
        assert j.threaded > 0                       # the slow syncs went to the thread
        j.delay = 0.0
        j.last_sync = 0.0
        threaded, before = j.threaded, j.commits
        await _load(j, 20)()                        # fast again: inline
        assert j.commits > before and j.threaded == threaded
        j.close()
    run(main)
    assert durable == sorted(set(durable)) and durable[-1] == 40


def test_inline_sync_zero_always_uses_the_thread(tmp_path, run):
    async def main():
        j = Journal.open(str(tmp_path / "j"), inline_sync=0.0)
        await _load(j, 5)()
        assert j._executor is not None and j.commits >= 1
        j.close()
    run(main)
