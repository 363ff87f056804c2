"""The benchmark server process: one workload on one loop.

Owns: ``python -m ringline.bench.server --loop NAME --workload KIND``.  The
process pins itself to ``--cpu`` (when given), creates the socket, creates
the loop, starts the workload and prints one ready line::

    RINGLINE-BENCH-READY {"port": 41234, "pid": 123, "loop": "uvloop", ...}

then serves until its stdin reaches end of file (the harness closes it; a
harness that dies closes it too, so no server outlives its harness) or until
it is terminated.  ``--probe`` instead checks that the loop can be created
and can run a coroutine, prints the same kind of line and exits.

The harness reads this process's CPU time from /proc, so nothing else runs
in it: the stdin watch is a thread blocked in ``read`` (it holds no GIL).
``--stdin-reader`` watches stdin with the loop's own ``add_reader`` instead,
for runs under valgrind (``ringline.bench.instr``): valgrind runs one thread
at a time and does not hand the CPU over while the loop blocks in
``io_uring_enter``, so a watcher thread would never see the end of stdin.

Invariants: nothing but the ready line goes to stdout; any failure before
it is a traceback on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading

from .loops import create_loop, get_loop_spec
from .servers import get_workload, load_plugins, make_socket

READY_PREFIX = "RINGLINE-BENCH-READY "

#: How long a server may take to stop after stdin closes before it is forced.
STOP_GRACE_S = 2.0


def _loop_identity(loop: asyncio.AbstractEventLoop) -> dict:
    cls = type(loop)
    return {"loop_class": f"{cls.__module__}.{cls.__qualname__}"}


def _announce(payload: dict) -> None:
    sys.stdout.write(READY_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


def _watch_stdin(loop: asyncio.AbstractEventLoop) -> None:
    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        try:
            loop.call_soon_threadsafe(loop.stop)
        except Exception:
            os._exit(0)
        threading.Event().wait(STOP_GRACE_S)
        os._exit(0)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _watch_stdin_in_loop(loop: asyncio.AbstractEventLoop) -> None:
    def readable():
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            loop.stop()

    os.set_blocking(0, False)
    loop.add_reader(0, readable)


def _probe(loop_name: str) -> int:
    loop = create_loop(loop_name)
    try:
        async def tick():
            await asyncio.sleep(0)
            return 42

        assert loop.run_until_complete(tick()) == 42
        _announce({"pid": os.getpid(), "loop": loop_name,
                   "version": get_loop_spec(loop_name).version(),
                   **_loop_identity(loop)})
    finally:
        loop.close()
    return 0


def serve(loop_name: str, workload_name: str, host: str, port: int,
          stdin_reader: bool = False) -> int:
    workload = get_workload(workload_name)
    if not workload.supports_loop(loop_name):
        print(f"workload {workload_name} does not run on loop {loop_name}",
              file=sys.stderr)
        return 2
    sock = make_socket(workload, host, port)
    loop = create_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        handle = loop.run_until_complete(workload.start(sock))
        _announce({"port": sock.getsockname()[1], "pid": os.getpid(),
                   "loop": loop_name, "workload": workload_name,
                   **_loop_identity(loop)})
        if stdin_reader:
            _watch_stdin_in_loop(loop)
        else:
            _watch_stdin(loop)
        loop.run_forever()
        close = getattr(handle, "close", None)
        if close is not None:
            close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringline.bench.server")
    parser.add_argument("--loop", required=True)
    parser.add_argument("--workload")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin this process to one CPU")
    parser.add_argument("--stdin-reader", action="store_true",
                        help="watch stdin with the loop's add_reader, not a thread "
                             "(for runs under valgrind)")
    parser.add_argument("--probe", action="store_true",
                        help="check the loop runs, print a ready line, exit")
    args = parser.parse_args(argv)
    load_plugins()  # a plugin may register loops as well as workloads
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.probe:
        return _probe(args.loop)
    if not args.workload:
        parser.error("--workload is required")
    return serve(args.loop, args.workload, args.host, args.port, args.stdin_reader)


if __name__ == "__main__":
    sys.exit(main())
