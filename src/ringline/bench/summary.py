"""Summaries shared by the sections of the results document.

Owns: how a list of rounds becomes numbers (:func:`median_min_max`,
:func:`median_of`) and how an error becomes the one line a results entry
and the report quote (:func:`one_line_error`).  The server section
(:mod:`.runner`) and the client section (:mod:`.clients`) both use them, so
their summaries read alike.

Lifecycle: pure functions; nothing is kept.

Invariants: an empty input gives None (never a ZeroDivisionError or a
StatisticsError); a key whose value is None in a round is left out of that
key's median; an error line is at most 300 characters.
"""
from __future__ import annotations

import statistics


def median_min_max(values: list[float]) -> dict | None:
    """``{"median", "min", "max"}`` of ``values``, or None when empty."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def median_of(rounds: list[dict], key: str) -> float | None:
    """The median of ``round[key]`` over the rounds where it is set, or None."""
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def one_line_error(message: str) -> str:
    """The first line of ``message``; for a traceback, its first and last
    lines (the last says more than the first); at most 300 characters."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "error"
    if len(lines) > 1 and "Traceback" in message:
        return f"{lines[0]} ... {lines[-1].strip()}"[:300]
    return lines[0][:300]
