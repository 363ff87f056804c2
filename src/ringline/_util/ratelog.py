"""A warning that is logged at most once per interval.

Owns: the rate limit of one recurring warning (a refused connection, a full
acceptor queue) so that a flood of the same event cannot flood the log.

Lifecycle: one object per recurring warning, for the life of its owner.

Invariant: every suppressed occurrence is counted and reported in the next
warning that gets through, so no event is silently lost from the log.
"""
from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """At most one warning per interval; the rest are summed into the next."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self.logger = logger
        self.interval = interval
        self.last = 0.0
        self.suppressed = 0

    def warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        self.last = now
        extra = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        self.suppressed = 0
        self.logger.warning(msg + extra, *args)
