"""Serial journal commits on a ringline loop: what one commit costs.

Owns nothing but its run: a `Journal` in a temp file, N commits of 10
records of 100 bytes each, every commit waited for (append, then await
`on_durable`) so that nothing overlaps and the per-commit cost shows: wall
time and process CPU time (utime + stime of every thread of the process,
io_uring's workers and the poll driver's helper thread included) per commit.
Lifecycle: one loop, one journal, closed and removed at the end.

    RINGLINE_BACKEND=io_uring python scripts/journal_commits.py -n 3000
    python scripts/journal_commits.py --ring-write            # write linked in the ring
    python scripts/journal_commits.py --journal old/journal.py   # another journal.py

`--journal` loads another version of kv/journal.py (e.g. `git show
main:src/ringline/kv/journal.py > /tmp/old.py`) to compare before and after
on the same build; `perf stat -e context-switches,task-clock` around the
command adds the context switches.
"""
import argparse
import asyncio
import importlib.util
import os
import tempfile
import time

import ringline


def _journal_class(path):
    if path is None:
        from ringline.kv.journal import Journal
        return Journal
    spec = importlib.util.spec_from_file_location("journal_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Journal


async def _run(journal_cls, n, kw):
    loop = asyncio.get_running_loop()
    waiter = [None]

    def durable(_seq):
        if waiter[0] is not None and not waiter[0].done():
            waiter[0].set_result(None)

    with tempfile.TemporaryDirectory() as d:
        j = journal_cls.open(os.path.join(d, "j.rlj"), on_durable=durable, **kw)
        rec = b"x" * 100
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            for _ in range(10):
                seq = j.append(rec)
            if j.synced < seq:
                waiter[0] = loop.create_future()
                await waiter[0]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        j.close()
    return wall, cpu, j.commits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3000, help="commits")
    ap.add_argument("--ring-write", action="store_true", help="Journal(ring_write=True)")
    ap.add_argument("--journal", help="path of another journal.py to load")
    args = ap.parse_args()
    kw = {"ring_write": True} if args.ring_write else {}
    wall, cpu, commits = ringline.run(_run(_journal_class(args.journal), args.n, kw))
    print(f"{ringline.backend().name}: {commits} commits, {wall / args.n * 1e6:.1f} us wall "
          f"and {cpu / args.n * 1e6:.1f} us process CPU per commit")


if __name__ == "__main__":
    main()
