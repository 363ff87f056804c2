"""Markdown rendering of a results document.

Owns: the tables printed on stdout and pasted into docs/benchmarks.md:

* throughput: one row per workload x connections x size, one column per
  loop (median requests/s with the min-max over rounds), then the ratios of
  the subject loop (ringline when measured) to each other loop;
* latency: median p50 / p99 / p99.9 per loop for the same rows;
* server CPU: seconds of server CPU per million requests per loop, with the
  same ratios (lower is better, so a ratio below 1 favours the subject);
  when the run measured a C reference server (``--references``), each
  loop's CPU per request relative to it, and the reference's own numbers
  in the throughput and CPU tables;
* micro-benchmarks: operations per second per loop, with ratios;
* generator validation, when it ran;
* client workloads, when they ran: per server (redis, memcache) one table
  of client operations per second and one of client CPU per million
  operations, one column per driver, ringline's client over each peer, and
  a closing note with the ratio ranges and the issue's targets.

Every function takes the results document (the content of results.json),
so a saved run can be re-rendered: ``python -m ringline.bench.report DIR``.

Lifecycle: pure functions of the document, called once a run has finished
(or on a saved one); nothing is kept between calls.

Invariants: the document is only read; a section the run did not produce
renders as nothing, and an error in a cell or round becomes a numbered
footnote under its table rather than a missing row.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .runner import format_size


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value >= 1e3:
        return f"{value / 1e3:.2f}k"
    return f"{value:.0f}"


def _fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.1f}ms"
    return f"{value:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _table(header: list[str], rows: list[list[str]], align_right_from: int) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < align_right_from else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _with_notes(text: str, notes: list[str]) -> str:
    """A table followed by its numbered footnotes (the ``[n]`` of its cells)."""
    if notes:
        text += "\n\n" + "\n".join(f"[{i + 1}] {n}" for i, n in enumerate(notes))
    return text


def _loops(results: dict) -> list[str]:
    return list(results["config"]["loops"])


def _others(results: dict) -> tuple[str, list[str]]:
    subject = results.get("subject") or _loops(results)[-1]
    # nearest competitor first: with asyncio, uvloop, ringline -> ringline/uvloop, ringline/asyncio
    return subject, [l for l in reversed(_loops(results)) if l != subject]


def _summary(entry: dict) -> dict | None:
    return entry.get("summary") if entry else None


def _cell_value(entry: dict | None, notes: list[str], key: str, rate: str = "rps") -> str:
    """A rate's median (min-max) over the rounds of a server's (``rps``) or a
    client driver's (``ops_per_s``) entry; an error or failed rounds become
    footnotes in ``notes``."""
    if entry is None:
        return "-"
    if entry.get("status") == "n/a":
        return "n/a"
    summary = _summary(entry)
    if summary is None:
        notes.append(f"{key}: {entry.get('error')}")
        return f"error[{len(notes)}]"
    rps = summary[rate]
    text = f"{fmt_rate(rps['median'])} ({fmt_rate(rps['min'])}–{fmt_rate(rps['max'])})"
    bad = [r for r in entry["rounds"] if r.get("status") != "ok"]
    if bad:
        notes.append(f"{key}: {len(bad)} of {len(entry['rounds'])} rounds not counted: "
                     f"{bad[0].get('error')}")
        text += f" [{len(notes)}]"
    return text


def _median_of(entry: dict | None, field: str) -> float | None:
    summary = _summary(entry) if entry else None
    if not summary:
        return None
    value = summary.get(field)
    if isinstance(value, dict):
        return value["median"]
    return value


def _has_reference(results: dict) -> bool:
    return any(cell.get("references") for cell in results["cells"])


def _reference_value(cell: dict, notes: list[str], field: str) -> str:
    """The C reference column: its throughput or CPU, or a footnoted error."""
    refs = cell.get("references") or {}
    if not refs:
        return "-"
    ref = cell.get("c_reference")
    if ref is None:
        name, entry = next(iter(refs.items()))
        notes.append(f"{cell['key']} on {name}: {entry.get('error')}")
        return f"error[{len(notes)}]"
    if field == "rps":
        return f"{fmt_rate(ref['rps'])} ({ref['name']})"
    return f"{ref['cpu_s_per_mreq']:.2f} ({ref['name']})"


def _relative_to_c(cell: dict, loop: str) -> str:
    rel = ((cell.get("c_reference") or {}).get("relative") or {}).get(loop)
    return "-" if rel is None else f"{rel:.2f}x"


def throughput_table(results: dict) -> str:
    loops = _loops(results)
    subject, others = _others(results)
    with_ref = _has_reference(results)
    header = ["workload", "conns", "size", *[f"{l} req/s" for l in loops],
              *[f"{subject}/{o}" for o in others]]
    if with_ref:
        header += ["C reference req/s", f"{subject} CPU/req vs C"]
    rows, notes = [], []
    for cell in results["cells"]:
        row = [cell["workload"], str(cell["conns"]), format_size(cell["size"])]
        for loop in loops:
            row.append(_cell_value(cell["loops"].get(loop), notes,
                                   f"{cell['key']} on {loop}"))
        mine = _median_of(cell["loops"].get(subject), "rps")
        for other in others:
            row.append(_ratio(mine, _median_of(cell["loops"].get(other), "rps")))
        if with_ref:
            row += [_reference_value(cell, notes, "rps"), _relative_to_c(cell, subject)]
        rows.append(row)
    return _with_notes(_table(header, rows, 3), notes)


def latency_table(results: dict) -> str:
    loops = _loops(results)
    header = ["workload", "conns", "size", *[f"{l} p50 / p99 / p99.9 µs" for l in loops]]
    rows = []
    for cell in results["cells"]:
        row = [cell["workload"], str(cell["conns"]), format_size(cell["size"])]
        for loop in loops:
            summary = _summary(cell["loops"].get(loop))
            if not summary:
                row.append("-")
                continue
            row.append(" / ".join(_fmt_us(summary[k]) for k in ("p50_us", "p99_us", "p999_us")))
        rows.append(row)
    return _table(header, rows, 3)


def cpu_table(results: dict) -> str:
    """CPU per request; with a C reference, each loop's value is followed by
    its ratio to the reference's (the figure that separates the loops when
    the generator's CPU caps throughput)."""
    loops = _loops(results)
    subject, others = _others(results)
    with_ref = _has_reference(results)
    header = ["workload", "conns", "size",
              *[f"{l} CPU s/Mreq" + (" (vs C)" if with_ref else "") for l in loops],
              *[f"{subject}/{o}" for o in others]]
    if with_ref:
        header.append("C reference CPU s/Mreq")
    rows, notes = [], []
    for cell in results["cells"]:
        row = [cell["workload"], str(cell["conns"]), format_size(cell["size"])]
        for loop in loops:
            value = _median_of(cell["loops"].get(loop), "cpu_s_per_mreq")
            text = "-" if value is None else f"{value:.2f}"
            if with_ref and value is not None and cell.get("c_reference"):
                text += f" ({_relative_to_c(cell, loop)})"
            row.append(text)
        mine = _median_of(cell["loops"].get(subject), "cpu_s_per_mreq")
        for other in others:
            row.append(_ratio(mine, _median_of(cell["loops"].get(other), "cpu_s_per_mreq")))
        if with_ref:
            row.append(_reference_value(cell, notes, "cpu"))
        rows.append(row)
    return _with_notes(_table(header, rows, 3), notes)


def native_table(results: dict) -> str:
    """The native API's echo (ringline's ``native`` and ``native-task``
    workloads) against each loop's asyncio.Protocol echo, cell by cell."""
    cells = {(c["workload"], c["conns"], c["size"]): c for c in results["cells"]}
    others = [l for l in _loops(results) if not l.startswith("ringline")] + ["ringline"]
    rows = []
    for (workload, conns, size), cell in cells.items():
        if workload not in ("native", "native-task"):
            continue
        proto = cells.get(("protocol", conns, size))
        if not proto:
            continue
        for subject in ("ringline", "ringline-poll"):
            mine = _median_of(cell["loops"].get(subject), "rps")
            mine_cpu = _median_of(cell["loops"].get(subject), "cpu_s_per_mreq")
            if mine is None:
                continue
            for other in others:
                theirs = _median_of(proto["loops"].get(other), "rps")
                theirs_cpu = _median_of(proto["loops"].get(other), "cpu_s_per_mreq")
                if theirs is None:
                    continue
                rows.append([str(conns), format_size(size), f"{subject} {workload}",
                             f"{other} protocol", fmt_rate(mine), fmt_rate(theirs),
                             _ratio(mine, theirs), _ratio(mine_cpu, theirs_cpu)])
    if not rows:
        return ""
    return _table(["conns", "size", "subject", "peer", "subject req/s", "peer req/s",
                   "throughput ratio", "CPU/req ratio"], rows, 4)


def micro_table(results: dict) -> str:
    micro = results.get("micro")
    if not micro:
        return ""
    loops = _loops(results)
    subject, others = _others(results)
    header = ["micro-benchmark", *[f"{l} ops/s" for l in loops],
              *[f"{subject}/{o}" for o in others]]
    rows = []
    for name in micro["benchmarks"]:
        row = [name]
        medians = {}
        for loop in loops:
            entry = micro["loops"].get(loop, {})
            stat = (entry.get("summary") or {}).get(name)
            medians[loop] = stat["median"] if stat else None
            if stat:
                row.append(f"{fmt_rate(stat['median'])} "
                           f"({fmt_rate(stat['min'])}–{fmt_rate(stat['max'])})")
            else:
                row.append("error" if entry.get("error") or entry.get("rounds") else "-")
        for other in others:
            row.append(_ratio(medians.get(subject), medians.get(other)))
        rows.append(row)
    return _table(header, rows, 1)


def _busy(summary: dict | None) -> str:
    """The generator's own load: busy share when spinning, else CPU use."""
    if not summary:
        return "-"
    if summary.get("client_busy_frac") is not None:
        return f"{summary['client_busy_frac'] * 100:.0f}%"
    if summary.get("client_cpu_util") is not None:
        return f"{summary['client_cpu_util'] * 100:.0f}% CPU"
    return "-"


def validation_table(results: dict) -> str:
    validation = results.get("validation")
    if not validation:
        return ""
    header = ["mode", "conns", "size", "C server req/s", "best Python req/s (here)",
              "ratio", "generator CPU", "generator µs/req",
              "cheapest Python server µs/req (here)", "CPU ratio"]
    rows = []
    for row in validation["rows"]:
        summary = row.get("summary")
        best = row.get("best_python")
        cheap = row.get("cheapest_python")
        gen_cpu = (summary or {}).get("client_cpu_s_per_mreq")
        rows.append([
            row["mode"], str(row["conns"]), format_size(row["size"]),
            "error: " + str(row.get("error")) if not summary else
            f"{fmt_rate(summary['rps']['median'])} "
            f"({fmt_rate(summary['rps']['min'])}–{fmt_rate(summary['rps']['max'])})",
            f"{fmt_rate(best['rps'])} ({best['workload']}, {best['loop']})" if best else "-",
            f"{row['ratio']:.2f}x" if row.get("ratio") else "-",
            _busy(summary),
            f"{gen_cpu:.2f}" if gen_cpu else "-",
            f"{cheap['cpu_s_per_mreq']:.2f} ({cheap['workload']}, {cheap['loop']})"
            if cheap else "-",
            f"{row['cpu_ratio']:.2f}x" if row.get("cpu_ratio") else "-",
        ])
    text = _table(header, rows, 3)
    gen, py = validation.get("best_generator"), validation.get("best_python")
    if gen and py:
        verdict = "PASS" if validation["passed"] else "FAIL"
        text += (f"\n\nThroughput: best generator rate {fmt_rate(gen['rps'])} req/s "
                 f"({gen['mode']}, c={gen['conns']}, {format_size(gen['size'])}) vs best "
                 f"Python server {fmt_rate(py['rps'])} req/s ({py['workload']} on "
                 f"{py['loop']}, c={py['conns']}, {format_size(py['size'])}): "
                 f"{validation['ratio']:.2f}x, required ≥ "
                 f"{validation['required_ratio']:.0f}x: {verdict}")
    cheap = validation.get("cheapest_python")
    if validation.get("cpu_ratio") and cheap:
        text += (f"\n\nCPU: the generator spends {validation['generator_cpu_s_per_mreq']:.2f} "
                 f"µs per request at best; the cheapest Python server "
                 f"{cheap['cpu_s_per_mreq']:.2f} µs ({cheap['workload']} on {cheap['loop']}, "
                 f"c={cheap['conns']}, {format_size(cheap['size'])}): one generator CPU can "
                 f"drive {validation['cpu_ratio']:.2f}x what one server CPU can serve.")
    return text


def machine_line(results: dict) -> str:
    m = results["machine"]
    pin = results.get("pinning", {})
    pinning = (f"server on CPU {pin['server_cpu']}, generator on CPU(s) "
               f"{','.join(map(str, pin['client_cpus']))}" if pin.get("pinned")
               else "not pinned")
    clients = results.get("clients")
    if clients and not results.get("cells"):
        cpin = clients.get("pinning", {})
        pinning = (f"client under test on CPU {cpin.get('client_cpu')}, redis-server and "
                   f"memcached on CPU {clients['config'].get('server_cpu')}"
                   if cpin.get("pinned") else "not pinned")
    versions = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    if m.get("ringline_commit"):
        versions += f" (ringline tree {m['ringline_commit']})"
    return (f"{m['cpu_model']}, {m['cpus_online']} CPUs, Linux {m['kernel']}, "
            f"Python {m['python']}; {versions}; {pinning}; load average at start "
            f"{'/'.join(map(str, m.get('load_average_start') or []))}")


# ---- client workloads ---------------------------------------------------------


def _client_drivers(clients: dict, kind: str) -> tuple[list[str], list[str], list[str]]:
    """(all drivers of kind in column order, ringline's, the peers)."""
    names: list[str] = []
    for cell in clients["cells"]:
        if cell["kind"] == kind:
            for name in cell["drivers"]:
                if name not in names:
                    names.append(name)
    subjects = [n for n in names if clients["drivers"].get(n, {}).get("subject")]
    peers = [n for n in names if n not in subjects]
    return peers + subjects, subjects, peers


def _client_kinds(clients: dict) -> list[str]:
    kinds: list[str] = []
    for cell in clients["cells"]:
        if cell["kind"] not in kinds:
            kinds.append(cell["kind"])
    return kinds


def _short(name: str) -> str:
    return "ringline" if name.startswith("ringline") else name


def _client_server_line(clients: dict, kind: str) -> str:
    server = clients.get("servers", {}).get(kind, {})
    pin = clients.get("pinning", {})
    where = (f"server pinned to CPU {server.get('cpu')}, clients to CPU {pin.get('client_cpu')}"
             if pin.get("pinned") else "not pinned")
    if server.get("error"):
        head = f"server failed: {server['error']}"
    else:
        head = server.get("version") or kind
    drivers = []
    for name in _client_drivers(clients, kind)[0]:
        info = clients["drivers"].get(name, {})
        if not info.get("available"):
            drivers.append(f"{name} unavailable ({info.get('error')})")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items() if v)
        drivers.append(f"{name} ({versions}) on {info.get('loop')} {info.get('loop_version')}")
    return f"**{kind}**: {head}; {where}; " + "; ".join(drivers) + "."


def client_table(results: dict, field: str) -> str:
    """One table per server kind: ops/s (``field="ops"``) or CPU s/Mop (``"cpu"``)."""
    clients = results.get("clients")
    if not clients or not clients.get("cells"):
        return ""
    parts = []
    for kind in _client_kinds(clients):
        names, subjects, peers = _client_drivers(clients, kind)
        unit = "ops/s" if field == "ops" else "CPU s/Mop"
        header = ["op", "size", "load", *[f"{n} {unit}" for n in names],
                  *[f"{_short(s)}/{p}" for s in subjects for p in peers]]
        rows, notes = [], []
        for cell in clients["cells"]:
            if cell["kind"] != kind:
                continue
            row = [cell["op"].upper(), format_size(cell["size"]), cell["load"]]
            stat = "ops_per_s" if field == "ops" else "cpu_s_per_mop"
            for name in names:
                entry = cell["drivers"].get(name)
                if field == "ops":
                    row.append(_cell_value(entry, notes, f"{cell['key']} on {name}",
                                           "ops_per_s"))
                else:
                    value = _median_of(entry, stat)
                    row.append("-" if value is None else f"{value:.2f}")
            for subject in subjects:
                for peer in peers:
                    row.append(_ratio(_median_of(cell["drivers"].get(subject), stat),
                                      _median_of(cell["drivers"].get(peer), stat)))
            rows.append(row)
        text = _with_notes(_client_server_line(clients, kind) + "\n\n"
                           + _table(header, rows, 3), notes)
        parts.append(text)
    return "\n\n".join(parts)


def client_latency_table(results: dict) -> str:
    clients = results.get("clients")
    if not clients or not clients.get("cells"):
        return ""
    parts = []
    for kind in _client_kinds(clients):
        names = _client_drivers(clients, kind)[0]
        header = ["op", "size", "load", *[f"{n} p50 / p99 µs" for n in names]]
        rows = []
        for cell in clients["cells"]:
            if cell["kind"] != kind:
                continue
            row = [cell["op"].upper(), format_size(cell["size"]), cell["load"]]
            for name in names:
                summary = (cell["drivers"].get(name) or {}).get("summary")
                row.append(" / ".join(_fmt_us(summary[k]) for k in ("p50_us", "p99_us"))
                           if summary else "-")
            rows.append(row)
        parts.append(f"**{kind}**\n\n" + _table(header, rows, 3))
    return "\n\n".join(parts)


def _range(values: list[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if abs(hi - lo) < 0.005 else f"{lo:.2f}–{hi:.2f}x"


def client_note(results: dict) -> str:
    """The closing note: ringline's client over each peer, per load, and the targets."""
    clients = results.get("clients")
    if not clients or not clients.get("ratios"):
        return ""
    lines = ["Client ratios (ringline's median ops/s over the peer's; the range "
             "covers GET/SET × value sizes; CPU: ringline's CPU per op over the peer's):"]
    pairs: list[tuple[str, str, str]] = []
    for r in clients["ratios"]:
        pair = (r["kind"], r["subject"], r["peer"])
        if pair not in pairs:
            pairs.append(pair)
    targets = {(t["kind"], t["subject"], t["peer"]): t for t in clients.get("targets", [])}
    for kind, subject, peer in pairs:
        rows = [r for r in clients["ratios"]
                if (r["kind"], r["subject"], r["peer"]) == (kind, subject, peer)]
        loads: list[str] = []
        for r in rows:
            if r["load"] not in loads:
                loads.append(r["load"])
        bits = []
        for load in loads:
            sel = [r for r in rows if r["load"] == load]
            ops = [r["ratio"] for r in sel if r["ratio"]]
            cpu = [r["cpu_ratio"] for r in sel if r["cpu_ratio"]]
            ops_only = {r["op"] for r in sel}
            kind_ops = {x["op"] for x in clients["ratios"] if x["kind"] == kind}
            what = load + (f" ({'/'.join(sorted(o.upper() for o in ops_only))} only)"
                           if ops_only < kind_ops else "")
            bits.append(f"{what} {_range(ops)} (CPU {_range(cpu)})")
        line = f"- {subject} / {peer}: " + "; ".join(bits) + "."
        target = targets.get((kind, subject, peer))
        if target:
            verdict = "met" if target["met"] == target["cells"] else (
                "partly met" if target["met"] else "not met")
            line += (f" Target ≥ {target['required']:g}x at {target['tasks']} tasks: "
                     f"{verdict} ({target['met']} of {target['cells']} cells).")
        lines.append(line)
    return "\n".join(lines)


def client_section(results: dict) -> list[str]:
    clients = results.get("clients")
    if not clients:
        return []
    ccfg = clients["config"]
    parts = [f"### Client workloads\n\n{ccfg['rounds']} rounds × {ccfg['duration']:g} s "
             f"per driver and cell, interleaved, after a {ccfg['warmup']:g} s warm-up "
             f"session per fresh client and a {ccfg['lead_in']:g} s unmeasured lead-in per "
             f"session; closed loop (T tasks back to back, or one task sending batches of "
             f"{ccfg['pipeline']}); median (min–max)."]
    if clients.get("cells"):
        parts += ["### Client throughput (ops/s)", client_table(results, "ops"),
                  "### Client CPU per million ops (lower is better)",
                  client_table(results, "cpu"),
                  "### Client latency (median over rounds; per batch for pipelines)",
                  client_latency_table(results)]
    note = client_note(results)
    if note:
        parts.append(note)
    problems = [f"{name}: {info.get('error')}" for name, info in clients["drivers"].items()
                if not info.get("available")]
    problems += [f"{kind} server: {info['error']}" for kind, info in
                 clients.get("servers", {}).items() if info.get("error")]
    if problems:
        parts.append("Unavailable: " + "; ".join(problems))
    return parts


def render(results: dict) -> str:
    cfg = results["config"]
    parts = [f"## ringline bench ({cfg['preset']}): {results.get('created', '')}",
             machine_line(results)]
    if results["cells"] or not results.get("clients"):
        parts += [
            f"{cfg['rounds']} rounds × {cfg['duration']:g} s per loop and cell, after a "
            f"{cfg['warmup']:g} s warm-up session per fresh server and a "
            f"{cfg['lead_in']:g} s unmeasured lead-in per session; median (min–max).",
            "### Throughput (requests/s)", throughput_table(results),
            "### Latency (median over rounds)", latency_table(results),
            "### Server CPU per million requests (lower is better)", cpu_table(results)]
    native = native_table(results)
    if native:
        parts += ["### Native API echo vs each loop's asyncio.Protocol echo", native]
    unavailable = [f"{name}: {info.get('error')}" for name, info in results["loops"].items()
                   if not info.get("available")]
    if unavailable:
        parts.append("Unavailable loops: " + "; ".join(unavailable))
    micro = micro_table(results)
    if micro:
        parts += ["### Loop micro-benchmarks (ops/s, higher is better)", micro]
    validation = validation_table(results)
    if validation:
        parts += ["### Generator validation (C echo server)", validation]
    parts += client_section(results)
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "bench-results")
    if path.is_dir():
        path = path / "results.json"
    sys.stdout.write(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
