"""The progress display on stderr.

Owns: :class:`Progress`, which shows which cell and round is running, the
elapsed time and an estimate of the time remaining.  The estimate starts from
the plan (the planned seconds of every session plus a per-server overhead)
and is corrected by how fast the run has actually gone so far.

On a terminal one status line is redrawn in place; otherwise (CI logs, a
pipe) each update is its own line.

Lifecycle: one Progress per run, created with the plan's seconds; the run
calls ``show`` (the status line), ``note`` (a line that stays), ``advance``
(planned work done) and ``finish`` once at the end.

Invariants: nothing here writes to stdout, which carries only the result
table; a disabled Progress writes nothing at all; the estimate never goes
below zero.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    def __init__(self, planned_s: float, stream: TextIO | None = None,
                 enabled: bool = True):
        self.planned_s = max(planned_s, 1e-3)
        self.done_s = 0.0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.started = time.monotonic()
        self._last_len = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        left = max(self.planned_s - self.done_s, 0.0)
        if self.done_s > 0.05 * self.planned_s:
            return left * self.elapsed() / self.done_s
        return left

    def advance(self, planned_seconds: float) -> None:
        """Mark a planned chunk of work as done."""
        self.done_s += planned_seconds

    def show(self, what: str) -> None:
        if not self.enabled:
            return
        line = (f"{what} | elapsed {_clock(self.elapsed())} | "
                f"remaining ~{_clock(self.remaining())}")
        if self.tty:
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A message that stays (warnings, errors)."""
        if not self.enabled:
            return
        if self.tty and self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
            self._last_len = 0
        self.stream.write(message + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.note(f"done in {_clock(self.elapsed())}")
