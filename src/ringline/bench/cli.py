"""The ``ringline bench`` command line: presets, options, outputs.

Owns: argument parsing, the presets, and turning a finished run into its
outputs (the Markdown tables on stdout, ``results.json`` and ``chart.png``
in ``--out``).  Progress goes to stderr.

Presets (explicit options override them):

``--quick``  about two minutes with three loops: protocol, streams, http and
             the native API echo, as on_data callbacks and as a with_data
             task loop (ringline loops only)
             at 10 and 100 connections, 1 KiB, 5 rounds of 0.7 s, plus the
             micro-benchmarks (3 rounds, short), plus the client workloads
             (3 rounds of 1 s, about 3.5 minutes).
(default)    every workload, 1/10/100 connections, 64 B/1 KiB/16 KiB,
             5 rounds of 2 s, micro-benchmarks (no client workloads unless
             ``--clients``).
``--full``   the default plus 100 KiB messages, the generator validation
             against the C echo server, and the client workloads (5 rounds
             of 2 s).
``--smoke``  every workload on every loop, 1 and 8 connections, 64 B and
             100 KiB, one short round with byte-exact verification, tiny
             micro-benchmarks; exits non-zero if anything failed.  Timing is
             never judged.  This is what CI runs.
``--clients`` only the client workloads: ringline's Redis and memcached
             clients against redis-py (hiredis), aiomcache and emcache, GET
             and SET of 64 B and 1 KiB with 1 task, 50 (redis) or 32
             (memcache) tasks, and pipelines of 100; quick settings (3 rounds
             of 1 s) unless a preset is given (``--clients --full``: 5 rounds
             of 2 s; ``--clients --smoke``: one short verified round).
             With ``--clients``, ``--rounds``, ``--duration``, ``--warmup``,
             ``--lead-in`` and ``--verify`` apply to the client sessions.

Exit status: 0 when the run finished (cells with errors are reported in the
table); with ``--smoke`` or ``--strict``, 1 if any cell, round or micro-
benchmark failed.

Lifecycle: one ``main()`` per command: parse, resolve the preset into a
:class:`.runner.BenchConfig`, run it, write the outputs, return the status.

Invariants: explicit options always win over the preset's values; stdout
carries only the result tables (progress and errors go to stderr).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .clients import CLIENT_PRESETS, ClientConfig
from .clients_drivers import DRIVERS, KINDS
from .loops import DEFAULT_LOOPS, LOOPS, expand_loop_names
from .micro import MICRO_BENCHMARKS
from .runner import (BenchConfig, count_errors, default_cpus, references_for,
                     run_benchmarks)

ALL_WORKLOADS = ("protocol", "buffered", "streams", "sock", "http", "udp")

PRESETS: dict[str, dict] = {
    "default": dict(workloads=None, conns=[1, 10, 100], sizes=[64, 1024, 16384],
                    rounds=5, duration=2.0, warmup=1.0, lead_in=0.3,
                    micro_rounds=5, micro_time=0.2, validate=False, verify=False,
                    clients=False),
    "quick": dict(workloads=["protocol", "streams", "http", "native", "native-task"], conns=[10, 100],
                  sizes=[1024], rounds=5, duration=0.7, warmup=0.7, lead_in=0.2,
                  micro_rounds=3, micro_time=0.05, validate=False, verify=False,
                  clients=True),
    "full": dict(workloads=None, conns=[1, 10, 100], sizes=[64, 1024, 16384, 102400],
                 rounds=5, duration=2.0, warmup=1.5, lead_in=0.3,
                 micro_rounds=5, micro_time=0.3, validate=True, verify=False,
                 clients=True),
    "smoke": dict(workloads=None, conns=[1, 8], sizes=[64, 102400], rounds=1,
                  duration=0.3, warmup=0.2, lead_in=0.0, micro_rounds=1,
                  micro_time=0.01, validate=False, verify=True, clients=False),
}


def parse_size(text: str) -> int:
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = 1
    if t.endswith("k"):
        factor, t = 1024, t[:-1]
    elif t.endswith("m"):
        factor, t = 1024 * 1024, t[:-1]
    value = int(float(t) * factor)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text}")
    return value


def _csv(convert):
    def parse(text: str):
        return [convert(part) for part in text.split(",") if part.strip()]
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringline bench",
        description="Side-by-side benchmark of ringline against asyncio and uvloop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Presets"):] if __doc__ else None)
    preset = parser.add_mutually_exclusive_group()
    for name in ("quick", "full", "smoke"):
        preset.add_argument(f"--{name}", dest="preset", action="store_const", const=name,
                            help=f"the {name} preset (see below)")
    parser.add_argument("--workloads", type=_csv(str),
                        help=f"comma-separated (default: all: {','.join(ALL_WORKLOADS)})")
    parser.add_argument("--loops", type=_csv(str),
                        help=f"comma-separated (default: {','.join(DEFAULT_LOOPS)}; "
                             f"known: {','.join(LOOPS)}; 'field': asyncio, uvloop, "
                             f"every installed field loop and ringline)")
    parser.add_argument("--python", metavar="PATH",
                        help="run the whole benchmark under this interpreter (its "
                             "environment must have ringline built for it and the "
                             "loops installed; see scripts/bench.sh)")
    parser.add_argument("--references", type=_csv(str),
                        help="C reference servers measured in every cell: auto (the "
                             "io_uring server, the epoll one for UDP; the default), "
                             "c-uring, c-epoll, none")
    parser.add_argument("--conns", type=_csv(int), help="connections, e.g. 1,10,100")
    parser.add_argument("--sizes", type=_csv(parse_size),
                        help="message sizes, e.g. 64,1K,16K,100K")
    parser.add_argument("--rounds", type=int, help="measured rounds per loop and cell")
    parser.add_argument("--duration", type=float, help="seconds measured per round")
    parser.add_argument("--warmup", type=float,
                        help="seconds of the warm-up session against each fresh server")
    parser.add_argument("--lead-in", type=float, dest="lead_in",
                        help="unmeasured seconds at the start of every session")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="output folder (default: bench-results/)")
    parser.add_argument("--no-micro", dest="micro", action="store_false", default=True,
                        help="skip the loop micro-benchmarks")
    parser.add_argument("--micro-only", action="store_true",
                        help="only the loop micro-benchmarks")
    parser.add_argument("--micro-rounds", type=int)
    parser.add_argument("--micro-time", type=float,
                        help="target seconds per micro-benchmark run")
    parser.add_argument("--validate-generator", dest="validate", action="store_const",
                        const=True, help="also run the generator against the C echo server")
    parser.add_argument("--no-validate", dest="validate", action="store_const", const=False)
    parser.add_argument("--verify", dest="verify", action="store_const", const=True,
                        help="generator compares every echoed byte (costs generator CPU)")
    parser.add_argument("--spin", action="store_true",
                        help="generator busy-polls its own CPU(s) and reports its busy share")
    parser.add_argument("--engine", choices=["epoll", "uring"],
                        help="generator I/O engine (default: epoll)")
    parser.add_argument("--server-cpu", type=int, help="CPU for the servers")
    parser.add_argument("--client-cpus", type=_csv(int), help="CPUs for the generator")
    parser.add_argument("--threads", type=int,
                        help="generator threads (default: one per generator CPU)")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--no-chart", dest="chart", action="store_false", default=True)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if anything failed (implied by --smoke)")
    clients = parser.add_argument_group("client workloads")
    clients.add_argument("--clients", action="store_true",
                         help="run only the client workloads (see below)")
    clients.add_argument("--no-clients", action="store_true",
                         help="leave the client workloads out of --quick / --full")
    clients.add_argument("--client-drivers", type=_csv(str),
                         help=f"comma-separated (default: all: {','.join(DRIVERS)})")
    clients.add_argument("--client-ops", type=_csv(str), help="get,set (default: both)")
    clients.add_argument("--client-sizes", type=_csv(parse_size),
                         help="value sizes (default: 64,1K)")
    clients.add_argument("--client-pipeline", type=int,
                         help="commands per pipeline batch (default 100; 0: no pipeline cells)")
    clients.add_argument("--client-rounds", type=int)
    clients.add_argument("--client-duration", type=float)
    clients.add_argument("--client-warmup", type=float)
    parser.add_argument("--list", action="store_true",
                        help="list workloads, loops and micro-benchmarks, then exit")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    from .servers import WORKLOADS, load_plugins

    load_plugins()
    preset_name = args.preset or "default"
    preset = dict(PRESETS[preset_name])

    def pick(name):
        value = getattr(args, name, None)
        return preset.get(name) if value is None else value

    workloads = pick("workloads") or list(WORKLOADS)
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)} "
                         f"(known: {', '.join(WORKLOADS)})")
    loops = expand_loop_names(args.loops) if args.loops else list(DEFAULT_LOOPS)
    unknown = [l for l in loops if l not in LOOPS]
    if unknown:
        raise SystemExit(f"unknown loop(s): {', '.join(unknown)} (known: {', '.join(LOOPS)})")
    server_cpu, client_cpus = default_cpus()
    if args.server_cpu is not None:
        server_cpu = args.server_cpu
    if args.client_cpus:
        client_cpus = args.client_cpus
    if args.no_pin:
        server_cpu, client_cpus = None, None
    clients = None
    if args.clients or (preset.get("clients") and not args.no_clients
                        and not args.micro_only):
        clients = client_config_from_args(args, server_cpu, client_cpus)
    if args.clients:
        preset_name = "clients" if args.preset is None else f"clients, {args.preset}"
    references = args.references or ["auto"]
    try:
        for mode in ("echo", "http", "udp"):
            references_for(references, mode)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return BenchConfig(
        references=references,
        loops=loops, workloads=workloads, conns=pick("conns"), sizes=pick("sizes"),
        rounds=pick("rounds"), duration=pick("duration"), warmup=pick("warmup"),
        lead_in=pick("lead_in"),
        micro_rounds=pick("micro_rounds"), micro_time=pick("micro_time"),
        verify=pick("verify"), spin=args.spin,
        server_cpu=server_cpu, client_cpus=client_cpus, threads=args.threads,
        engine=args.engine,
        out=args.out, preset=preset_name,
        cells=not args.micro_only and not args.clients,
        micro=args.micro and not args.clients,
        validate=False if args.clients else pick("validate"),
        chart=args.chart, progress=not args.quiet, clients=clients)


def client_config_from_args(args: argparse.Namespace, server_cpu: int | None,
                            client_cpus: list[int] | None) -> ClientConfig:
    """The client section's settings: its preset, then the options.

    The client under test runs on the CPU the server benchmark gives the
    servers (the first usable one), redis-server and memcached on the first
    generator CPU.
    """
    name = args.preset or ("quick" if args.clients else "default")
    settings = dict(CLIENT_PRESETS[name])
    for key in ("rounds", "duration", "warmup"):
        value = getattr(args, f"client_{key}")
        if value is None and args.clients:
            value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.clients and args.lead_in is not None:
        settings["lead_in"] = args.lead_in
    if args.clients and args.verify:
        settings["verify"] = True
    drivers = args.client_drivers or list(DRIVERS)
    unknown = [d for d in drivers if d not in DRIVERS]
    if unknown:
        raise SystemExit(f"unknown client driver(s): {', '.join(unknown)} "
                         f"(known: {', '.join(DRIVERS)})")
    ops = args.client_ops or ["get", "set"]
    if any(op not in ("get", "set") for op in ops):
        raise SystemExit(f"unknown client op(s) in {','.join(ops)} (known: get,set)")
    if args.client_sizes:
        settings["sizes"] = args.client_sizes
    if args.client_pipeline is not None:
        settings["pipeline"] = args.client_pipeline
    return ClientConfig(drivers=drivers, ops=ops,
                        client_cpu=server_cpu,
                        server_cpu=client_cpus[0] if client_cpus else None,
                        **settings)


def _list() -> None:
    from .servers import WORKLOADS, load_plugins

    load_plugins()
    print("workloads:")
    for w in WORKLOADS.values():
        print(f"  {w.name:<10} {w.mode:<5} {w.description}")
    print("loops:")
    for spec in LOOPS.values():
        print(f"  {spec.name:<14} {spec.factory}{' ' + str(spec.kwargs) if spec.kwargs else ''}"
              f"  {spec.description}")
    print("micro-benchmarks:")
    for name, (_, desc) in MICRO_BENCHMARKS.items():
        print(f"  {name:<22} {desc}")
    print("client drivers (--clients):")
    for spec in DRIVERS.values():
        tasks = "/".join(map(str, KINDS[spec.kind].tasks))
        if spec.concurrent_only:
            tasks = f"{KINDS[spec.kind].tasks[-1]}, {'/'.join(spec.ops).upper()} only"
        print(f"  {spec.name:<18} {spec.kind:<8} {spec.loop:<8} tasks {tasks}; {spec.settings}")


def _without_python_option(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--python":
            skip = True
        elif not arg.startswith("--python="):
            out.append(arg)
    return out


def reexec_argv(python: str, argv: list[str]) -> list[str]:
    """The command that runs this benchmark under ``python`` instead."""
    return [python, "-m", "ringline.bench", *_without_python_option(argv)]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["http"]:        # the HTTP client workloads: bench/http_bench.py
        from .http_bench import main as http_main
        return http_main(argv[1:])
    if argv[:1] == ["grpc"]:        # the gRPC client workload: bench/grpc_bench.py
        from .grpc_bench import main as grpc_main
        return grpc_main(argv[1:])
    if argv[:1] == ["momento"]:     # Momento cache client workloads: bench/momento_bench.py
        from .momento_bench import main as momento_main
        return momento_main(argv[1:])
    args = build_parser().parse_args(argv)
    python = args.python and (shutil.which(args.python) or args.python)
    if python and os.path.realpath(python) != os.path.realpath(sys.executable):
        # everything (harness, servers, micro-benchmarks) runs under that
        # interpreter; it imports this very tree
        from .procs import _package_env

        command = reexec_argv(python, argv)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(command[0], command, _package_env())
        except OSError as exc:
            raise SystemExit(f"--python {args.python}: {exc}") from None
    if args.list:
        _list()
        return 0
    cfg = config_from_args(args)
    results = run_benchmarks(cfg, argv=["ringline", "bench", *argv])

    from .report import render

    sys.stdout.write(render(results))
    sys.stdout.flush()
    if cfg.chart and results["cells"]:
        from .chart import draw_chart

        draw_chart(results, cfg.out / "chart.png")
    print(f"results: {cfg.out / 'results.json'}"
          + (f", chart: {cfg.out / 'chart.png'}" if cfg.chart and results["cells"] else ""),
          file=sys.stderr)
    if args.preset == "smoke" or args.strict:
        problems = count_errors(results)
        if problems:
            print(f"{len(problems)} problem(s):", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 1
    return 0
