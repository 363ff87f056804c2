"""``ringline bench``: side-by-side benchmarks of ringline, asyncio and uvloop.

Owns nothing itself; it names the parts, one module per concern:

===================  =========================================================
``cli``              the command line, presets, outputs (``main``)
``runner``           the method: fresh servers, warm-up, interleaved rounds, CPU
``servers``          the registry of servers under test and the built-in servers
``servers_native``   the ``native`` workload: echo on ringline's Conn API
``servers_uvicorn``  the ``uvicorn`` workload: httptools + an ASGI hello world
``clients``          client workloads: ringline's Redis/memcache clients vs
                     redis-py, aiomcache and emcache against real servers
                     (configuration, plan, the run, ratios)
``clients_drivers``  the client drivers' registry and the per-library drivers
``clients_worker``   the worker process that runs one client driver
``clients_procs``    redis-server/memcached and the client workers' pipes
``momento_bench``    ``ringline bench momento``: ringline.momento vs the official
                     Momento SDK against ``momento_fake`` (a fake Scs server)
``server``           the server process (``python -m ringline.bench.server``)
``instr``            instructions per request of one server, under callgrind
``loops``            the registry of loops (name -> factory)
``loadgen``          building and running the C load generator and C echo server
``procs``            server processes and their CPU accounting
``childio``          reading children's output: prefixed lines, log tails
``portchild``        a helper process that prints its port, serves until EOF
``closedloop``       the closed-loop client cell of the per-library benchmarks
                     (http, grpc, momento) and their worker launcher
``summary``          median/min/max over rounds, an error in one line
``micro``            loop micro-benchmarks (run per loop in a subprocess)
``report``           Markdown tables
``chart``            chart.png
``machine``          the machine description stored with the results
``progress``         the progress display on stderr
``csrc/``            ``loadgen.c``, ``echo_server.c`` and ``uring_echo_server.c``
                     (sharing ``echo_common.h``), compiled at bench time
===================  =========================================================

Usage: ``ringline bench --quick`` or ``python -m ringline.bench --quick``; see
docs/benchmarks.md for the method and what each number means.  New servers
join the matrix through :func:`register_workload`, new loops through
:func:`register_loop`, without changes to the harness.

Lifecycle: importing the package loads the loop and workload registries
only; the harness (``cli``, ``runner``) is imported when ``main`` runs.
Invariants: the benchmark imports ringline's public layers and never the
other way round (tests/test_layers.py: ``bench`` is the top layer).
"""
from .loops import LOOPS, LoopSpec, register_loop
from .servers import WORKLOADS, Workload, register_workload


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


__all__ = ["main", "LOOPS", "LoopSpec", "register_loop", "WORKLOADS", "Workload",
           "register_workload"]
