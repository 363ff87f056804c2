"""The throughput chart (``chart.png``) of a results document.

Owns: :func:`draw_chart`: one panel per workload; in each, one group of bars
per (connections, size) cell and one bar per loop (median requests/s, with
a min-max whisker over rounds); above each group, the ratio of the subject
loop to each other loop (to the strongest three when more are measured).  Cells where a loop has no result get no bar for
that loop.  Uses matplotlib's non-interactive Agg backend.

Lifecycle: one call per finished run (or re-render); matplotlib is imported
inside the call, so the harness runs without it, and the figure is closed
before returning.

Invariants: the results document is only read; the chart is a function of
it alone (no clock, no machine state).
"""
from __future__ import annotations

from pathlib import Path

from .runner import format_size

_COLOURS = ["#8c8c8c", "#4c72b0", "#55a868", "#8172b2", "#c44e52", "#937860",
            "#da8bc3", "#ccb974", "#64b5cd", "#2f4f4f", "#b0b000", "#7a0177"]
_SUBJECT_COLOUR = "#dd5500"

#: Above this many other loops (the field), a group is labelled with the
#: subject's ratio to the strongest few only.
_MAX_RATIO_LINES = 3


def _colours(loops: list[str], subject: str) -> dict[str, str]:
    """One colour per loop, the subject's always the same orange."""
    out, i = {}, 0
    for loop in loops:
        if loop == subject:
            out[loop] = _SUBJECT_COLOUR
        else:
            out[loop] = _COLOURS[i % len(_COLOURS)]
            i += 1
    return out


def draw_chart(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    loops = list(results["config"]["loops"])
    subject = results.get("subject") or loops[-1]
    others = [l for l in reversed(loops) if l != subject]
    workloads: list[str] = []
    for cell in results["cells"]:
        if cell["workload"] not in workloads:
            workloads.append(cell["workload"])
    if not workloads:
        workloads = ["(no cells)"]

    groups_max = max([sum(1 for c in results["cells"] if c["workload"] == w)
                      for w in workloads] + [1])
    fig_w = max(7.0, 1.2 + groups_max * (0.35 * len(loops) + 0.5))
    fig, axes = plt.subplots(len(workloads), 1, figsize=(fig_w, 3.0 * len(workloads) + 0.6),
                             squeeze=False)
    width = 0.8 / max(len(loops), 1)
    colours = _colours(loops, subject)
    for ax, workload in zip(axes[:, 0], workloads):
        cells = [c for c in results["cells"] if c["workload"] == workload]
        top = 0.0
        for li, loop in enumerate(loops):
            xs, heights, lows, highs = [], [], [], []
            for gi, cell in enumerate(cells):
                summary = (cell["loops"].get(loop) or {}).get("summary")
                if not summary:
                    continue
                rps = summary["rps"]
                xs.append(gi - 0.4 + width * (li + 0.5))
                heights.append(rps["median"])
                lows.append(rps["median"] - rps["min"])
                highs.append(rps["max"] - rps["median"])
                top = max(top, rps["max"])
            if xs:
                ax.bar(xs, heights, width, yerr=[lows, highs], capsize=2,
                       color=colours[loop], label=loop,
                       error_kw={"elinewidth": 0.8})
        for gi, cell in enumerate(cells):
            mine = ((cell["loops"].get(subject) or {}).get("summary") or {}).get("rps")
            ratios = []
            for other in others:
                theirs = ((cell["loops"].get(other) or {}).get("summary") or {}).get("rps")
                if mine and theirs:
                    ratios.append((theirs["median"], other,
                                   f"{subject}/{other} {mine['median'] / theirs['median']:.2f}x"))
            if len(ratios) > _MAX_RATIO_LINES:
                ratios = sorted(ratios, reverse=True)[:_MAX_RATIO_LINES]
            lines = [text for _, _, text in ratios]
            if lines:
                group_top = max(
                    ((cell["loops"].get(l) or {}).get("summary") or {}).get("rps", {}).get("max", 0)
                    for l in loops)
                ax.text(gi, group_top * 1.03, "\n".join(lines), ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"c={c['conns']}" + (f"\n{format_size(c['size'])}"
                                                 if c["size"] is not None else "")
                            for c in cells], fontsize=8)
        ax.set_ylim(0, top * (1.12 + 0.1 * min(len(others), _MAX_RATIO_LINES)) if top else 1)
        ax.set_ylabel("requests/s")
        ax.set_title(workload, fontsize=10, loc="left")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v / 1000:.0f}k" if v >= 1000 else f"{v:.0f}"))
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles = [matplotlib.patches.Patch(color=colours[loop], label=loop) for loop in loops]
    ncol = min(len(loops), 6)
    legend_rows = -(-len(loops) // ncol)
    height = 3.0 * len(workloads) + 0.6
    # below the two-line title, centred, as many rows as it needs
    fig.legend(handles=handles, loc="upper center",
               bbox_to_anchor=(0.5, 1 - 0.5 / height), ncol=ncol, fontsize=8,
               frameon=False)
    machine = results.get("machine", {})
    fig.suptitle(f"ringline bench ({results['config']['preset']}): median req/s, "
                 f"min–max whiskers\n{machine.get('cpu_model', '')}, "
                 f"Python {machine.get('python', '')}", fontsize=9, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.6 + 0.2 * legend_rows) / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
