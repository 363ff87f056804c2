"""Instructions per request of one benchmark server, under callgrind.

Owns: ``python -m ringline.bench.instr``, the measurement used to compare
server cost on a machine too noisy for wall-clock numbers.  The server (any
workload on any loop, or a C reference) runs under ``valgrind
--tool=callgrind``; the C generator, outside valgrind, sends a fixed number
of requests per connection (``--requests``, bounded, verified).  It runs
twice, with a small and a large count, and reports the difference in the
server's instruction count over the difference in requests: start-up,
imports and shutdown cancel out, what is left is the per-request cost.

    python -m ringline.bench.instr --loop ringline --workload native \\
        --conns 10 --size 1K --requests 2000,10000

``--tree DIR`` runs the server from another checkout (an older commit's
worktree built in place), to compare commits.  ``--keep DIR`` keeps the callgrind output files (``callgrind_annotate``
them to see where the instructions go).  Valgrind itself is never a
dependency of the harness; this module is a tool for the analyses in
docs/benchmarks.md.

Invariants: the generator verifies every echoed byte unless ``--no-verify``
(a wrong answer is an error, not a count); every server started is stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .cli import parse_size
from .loadgen import LoadSpec, run_loadgen
from .procs import ServerProcess
from .servers import get_workload, load_plugins

_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def _callgrind_total(path: Path) -> int:
    match = _TOTALS.search(path.read_bytes())
    if not match:
        raise RuntimeError(f"no totals line in {path}")
    return int(match.group(1))


def measure_once(loop: str, workload: str, conns: int, size: int | None,
                 requests: int, out_dir: Path, cpu: int | None = None,
                 tree: Path | None = None, verify: bool = True) -> dict:
    """One callgrind run of a server answering ``conns * requests`` requests."""
    load_plugins()
    mode = get_workload(workload).mode if not loop.startswith("c-") else workload
    out_file = out_dir / f"callgrind.{loop}.{workload}.{requests}"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    if loop.startswith("c-"):
        server = ServerProcess.c_echo(mode, cpu=cpu,
                                      engine="uring" if loop == "c-uring" else "epoll")
    else:
        server = ServerProcess.python(loop, workload, cpu=cpu)
        # the loop itself watches stdin: it ends when stdin does, after
        # exactly the work the load gave it (no wake-up connections counted)
        server.argv.append("--stdin-reader")
    # a fixed hash seed: with a random one, start-up (imports) varies by
    # ~0.5M instructions from run to run, which the slope would absorb
    prefix = ["env", "PYTHONHASHSEED=0", *valgrind]
    if tree is not None:
        # the server imports ringline from another checkout (built in place)
        prefix = ["env", "PYTHONHASHSEED=0",
                  f"PYTHONPATH={Path(tree).resolve() / 'src'}", *valgrind]
    server.argv = prefix + server.argv
    server.native = loop.startswith("c-")
    try:
        server.start(timeout=120)
        report = run_loadgen(LoadSpec(mode=mode, port=server.port, conns=conns, size=size,
                                      duration=600, verify=verify, requests=requests),
                             timeout=600)
        # valgrind writes its counts at exit: let the server end on its own
        # (end of stdin), however slowly, rather than be killed
        server.proc.stdin.close()
        # (every server watches stdin from its own loop: nothing else has
        # to wake it, so the count holds exactly the work of the load)
        server.proc.wait(timeout=300)
    finally:
        server.close()
    if report["errors"]:
        raise RuntimeError(f"{loop} {workload}: {report['errors']} errors: "
                           f"{report.get('first_error')}")
    return {"requests": report["requests_total"], "instructions": _callgrind_total(out_file),
            "file": str(out_file)}


def measure(loop: str, workload: str, conns: int, size: int | None,
            counts: tuple[int, int], keep: Path | None = None,
            tree: Path | None = None, verify: bool = True) -> dict:
    """Instructions per request: the slope between two bounded runs."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    out_dir = keep or Path(tempfile.mkdtemp(prefix="ringline-instr-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        small = measure_once(loop, workload, conns, size, counts[0], out_dir, tree=tree,
                             verify=verify)
        large = measure_once(loop, workload, conns, size, counts[1], out_dir, tree=tree,
                             verify=verify)
    finally:
        if keep is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    per_request = ((large["instructions"] - small["instructions"])
                   / (large["requests"] - small["requests"]))
    return {"loop": loop, "workload": workload, "conns": conns, "size": size,
            "python": sys.version.split()[0], "runs": [small, large],
            "instructions_per_request": round(per_request, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringline.bench.instr",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", required=True,
                        help="a loop name, or c-uring / c-epoll (then --workload is the "
                             "mode: echo or http)")
    parser.add_argument("--workload", default="protocol")
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--size", type=parse_size, default=1024)
    parser.add_argument("--requests", default="2000,10000",
                        help="requests per connection of the two runs (small,large)")
    parser.add_argument("--keep", type=Path, help="keep the callgrind files here")
    parser.add_argument("--tree", type=Path,
                        help="run the server from another ringline checkout (its src/ "
                             "built in place), e.g. an older commit's worktree")
    parser.add_argument("--no-verify", dest="verify", action="store_false", default=True,
                        help="do not compare echoed bytes (to profile a server that "
                             "answers wrongly; lengths are still checked)")
    args = parser.parse_args(argv)
    small, large = (int(x) for x in args.requests.split(","))
    result = measure(args.loop, args.workload, args.conns, args.size, (small, large),
                     args.keep, args.tree, args.verify)
    result["tree"] = str(args.tree) if args.tree else None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
