"""Measure where zero-copy sends (SEND_ZC / SENDMSG_ZC) start to beat plain
SEND on this machine: one TCP connection over loopback, a reader process that
discards, the writer a ringline loop writing messages of a given size with
flow control. Prints MB/s per size for both modes and their ratio.

    python scripts/zc_threshold.py [--total-mb 256]
"""
import argparse
import asyncio
import multiprocessing
import os
import socket
import time

import ringline


def sink(port_q):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port_q.put(ls.getsockname()[1])
    while True:
        c, _ = ls.accept()
        while c.recv(1 << 20):
            pass
        c.close()


async def blast(port, size, total):
    loop = asyncio.get_running_loop()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    msg = os.urandom(size)
    n = total // size
    t = time.perf_counter()
    for _ in range(n):
        w.write(msg)
        await w.drain()
    w.close()
    await w.wait_closed()
    dt = time.perf_counter() - t
    return (n * size) / dt / 1e6, loop._ring_stats()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--total-mb", type=int, default=256)
    ap.add_argument("--sizes", default="4096,16384,65536,262144,1048576")
    args = ap.parse_args()
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=sink, args=(q,), daemon=True)
    p.start()
    port = q.get()
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(p.pid, {0})
        os.sched_setaffinity(0, {1})
    total = args.total_mb * 1024 * 1024
    print("| size | SEND MB/s | SEND_ZC MB/s | ZC/SEND |")
    print("|---:|---:|---:|---:|")
    for size in [int(s) for s in args.sizes.split(",")]:
        res = {}
        for mode, thr in (("copy", 1 << 62), ("zc", 0)):
            best = 0.0
            for _ in range(3):
                loop = ringline.Loop(send_zc_threshold=thr)
                try:
                    mbps, stats = loop.run_until_complete(blast(port, size, total))
                finally:
                    loop.close()
                if mode == "zc":
                    assert stats["zc_sends"] > 0
                best = max(best, mbps)
            res[mode] = best
        print(f"| {size} | {res['copy']:.0f} | {res['zc']:.0f} | {res['zc'] / res['copy']:.2f}x |")
    p.terminate()


if __name__ == "__main__":
    main()
