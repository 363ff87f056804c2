"""``Configuration``: how a CacheClient calls: the deadline of each
attempt, which failures it retries and how often, and how many channels
(HTTP/2 connections) it spreads its calls over.

Lifecycle: an immutable value (a frozen dataclass: change a field with
``dataclasses.replace``), read once by ``CacheClient``. The presets carry
the official SDK's deadlines (``laptop`` 15 s, ``in_region`` 1.1 s,
``low_latency`` 0.5 s, ``lambda_`` 1.1 s) and its retry policy: up to 3
retries of the idempotent commands on INTERNAL and UNAVAILABLE.

Invariants: ``deadline`` > 0 (per attempt, as the SDK's fixed-count
strategy: a retried command may take up to ``(max_retries + 1) *
deadline`` plus the backoff), ``max_retries`` >= 0, ``channels`` >= 1.
"""
from __future__ import annotations

import dataclasses
from typing import Any, FrozenSet, Tuple

from ..grpc import StatusCode

__all__ = ["Configuration", "RETRYABLE_STATUSES"]

RETRYABLE_STATUSES: FrozenSet[StatusCode] = frozenset({StatusCode.INTERNAL,
                                                       StatusCode.UNAVAILABLE})


@dataclasses.dataclass(frozen=True)
class Configuration:
    """``deadline``: seconds for each attempt of a command (sent as
    grpc-timeout and enforced locally). ``max_retries``: further attempts of
    an idempotent command that failed with one of ``retry_statuses``
    (increment and dictionary_increment are never retried). ``retry_backoff``:
    the pause before the first retry, doubled for each next one up to
    ``retry_backoff_max``, each with +-50 % jitter (0: retry at once, as the
    official SDK). ``channels``: HTTP/2 connections, used round robin; every
    command of the client is multiplexed over them, as many in flight as the
    server's stream limit allows. ``channel_options``: extra grpcio-style
    options for ringline.grpc.Channel (e.g. keepalive)."""
    deadline: float = 15.0
    max_retries: int = 3
    retry_backoff: float = 0.02
    retry_backoff_max: float = 1.0
    retry_statuses: FrozenSet[StatusCode] = RETRYABLE_STATUSES
    channels: int = 1
    channel_options: Tuple[Tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.deadline > 0:
            raise ValueError("deadline must be > 0 seconds")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise ValueError("the retry backoff must be >= 0")
        if self.channels < 1:
            raise ValueError("channels must be >= 1")

    @classmethod
    def laptop(cls) -> "Configuration":
        """Relaxed: 15 s per attempt (the SDK's Laptop preset)."""
        return cls(deadline=15.0)

    @classmethod
    def in_region(cls) -> "Configuration":
        """Next to the service: 1.1 s per attempt (InRegion.Default)."""
        return cls(deadline=1.1)

    @classmethod
    def low_latency(cls) -> "Configuration":
        """0.5 s per attempt (InRegion.LowLatency)."""
        return cls(deadline=0.5)

    @classmethod
    def lambda_(cls) -> "Configuration":
        """1.1 s per attempt (the SDK's Lambda preset)."""
        return cls(deadline=1.1)
