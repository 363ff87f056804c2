"""The ``ringline bench`` command line: presets, options, outputs.

Owns: argument parsing, the presets, and turning a finished run into its
outputs (the Markdown tables on stdout, ``results.json`` and ``chart.png``
in ``--out``).  Progress goes to stderr.

Presets (explicit options override them):

``--quick``  about two minutes with three loops: protocol, streams and http
             at 10 and 100 connections, 1 KiB, 5 rounds of 0.7 s, plus the
             micro-benchmarks (3 rounds, short).
(default)    every workload, 1/10/100 connections, 64 B/1 KiB/16 KiB,
             5 rounds of 2 s, micro-benchmarks.
``--full``   the default plus 100 KiB messages and the generator validation
             against the C echo server.
``--smoke``  every workload on every loop, 1 and 8 connections, 64 B and
             100 KiB, one short round with byte-exact verification, tiny
             micro-benchmarks; exits non-zero if anything failed.  Timing is
             never judged.  This is what CI runs.

Exit status: 0 when the run finished (cells with errors are reported in the
table); with ``--smoke`` or ``--strict``, 1 if any cell, round or micro-
benchmark failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .loops import DEFAULT_LOOPS, LOOPS
from .micro import MICRO_BENCHMARKS
from .runner import BenchConfig, count_errors, default_cpus, run_benchmarks

ALL_WORKLOADS = ("protocol", "buffered", "streams", "sock", "http", "udp")

PRESETS: dict[str, dict] = {
    "default": dict(workloads=None, conns=[1, 10, 100], sizes=[64, 1024, 16384],
                    rounds=5, duration=2.0, warmup=1.0, lead_in=0.3,
                    micro_rounds=5, micro_time=0.2, validate=False, verify=False),
    "quick": dict(workloads=["protocol", "streams", "http"], conns=[10, 100],
                  sizes=[1024], rounds=5, duration=0.7, warmup=0.7, lead_in=0.2,
                  micro_rounds=3, micro_time=0.05, validate=False, verify=False),
    "full": dict(workloads=None, conns=[1, 10, 100], sizes=[64, 1024, 16384, 102400],
                 rounds=5, duration=2.0, warmup=1.5, lead_in=0.3,
                 micro_rounds=5, micro_time=0.3, validate=True, verify=False),
    "smoke": dict(workloads=None, conns=[1, 8], sizes=[64, 102400], rounds=1,
                  duration=0.3, warmup=0.2, lead_in=0.0, micro_rounds=1,
                  micro_time=0.01, validate=False, verify=True),
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
                             f"known: {','.join(LOOPS)})")
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
    loops = args.loops or list(DEFAULT_LOOPS)
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
    return BenchConfig(
        loops=loops, workloads=workloads, conns=pick("conns"), sizes=pick("sizes"),
        rounds=pick("rounds"), duration=pick("duration"), warmup=pick("warmup"),
        lead_in=pick("lead_in"), micro=args.micro,
        micro_rounds=pick("micro_rounds"), micro_time=pick("micro_time"),
        validate=pick("validate"), verify=pick("verify"), spin=args.spin,
        server_cpu=server_cpu, client_cpus=client_cpus, threads=args.threads,
        engine=args.engine,
        out=args.out, preset=preset_name, cells=not args.micro_only,
        chart=args.chart, progress=not args.quiet)


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
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
