"""Instructions per SET of ringline.kv's native request path (FastConn.on_data),
in-process, counted by callgrind (stable on a busy machine; docs/kv.md,
"Performance").

Owns: a driver (`python scripts/kv_fastpath_instructions.py`) that runs itself
under `valgrind --tool=callgrind` twice per case, with 2,000 and 12,000
batches, and prints the difference per SET (so start-up cost cancels out);
and the inner loop (`--inner MODE P N`): a Shard, a FastConn with a gate that
accepts everything, N batches of P pipelined `SET key:<i> <16 bytes>`.

Cases: `none` (policy none, no replica ever: the server's configuration for
ringline.kv's default) and `repl` (a replica attached: every SET framed into
the WriteLog, the Backlog and the replicas' pending frames). PYTHONHASHSEED is
fixed so dict layouts match between runs. Run it on two checkouts to compare.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys


def inner(mode: str, pipeline: int, batches: int) -> None:
    from ringline.kv._fastresp import FastConn
    from ringline.kv.backlog import Backlog
    from ringline.kv.commands import Shard
    from ringline.kv.repl import WriteLog
    from ringline.kv.resp import Limits
    from ringline.redis._resp import encode_command

    class Gate:
        def push(self, data: bytes, seq: int) -> bool:
            return True

    def run_one(session, args):
        raise AssertionError(args)
    shard = Shard()
    wl = WriteLog()

    def hook(args):
        wl.append(encode_command(args))
    pending: list = []
    if mode == "repl":
        wl.backlog = Backlog(16 << 20)
        wl.on_frames = pending.append
        shard.on_write = hook
    fc = FastConn(Limits(), shard, shard.new_session(), Gate(), None, run_one, None, None,
                  wl, hook)
    batch = b"".join(encode_command((b"SET", b"key:%06d" % i, b"x" * 16))
                     for i in range(pipeline))
    view = memoryview(batch)
    on_data = fc.on_data
    for _ in range(batches):
        on_data(view)
        pending.clear()
    assert on_data(view) == len(batch)


def _count(mode: str, pipeline: int, batches: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, __file__, "--inner", mode, str(pipeline),
                           str(batches)], env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", proc.stderr).group(1))


def main() -> None:
    if sys.argv[1:2] == ["--inner"]:
        inner(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    for mode in ("none", "repl"):
        for p in (1, 16):
            per = (_count(mode, p, 12000) - _count(mode, p, 2000)) / (10000 * p)
            print(f"{mode:5} -P {p:2}: {per:8.0f} instructions per SET")


if __name__ == "__main__":
    main()
