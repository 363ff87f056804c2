"""TLS session tickets for QUIC resumption and 0-RTT: ``TicketStore``.

Owns a small bounded map from a key to the newest session ticket the engine
handed over (``SessionTicket`` of qh3 or aioquic; the store never looks
inside beyond ``not_valid_after``). A client keys it by origin (server
name, address, ALPN: a ticket is offered only to the server that issued
it); a server keys it by the ticket's own bytes (its ``fetch`` takes the
ticket out: a ticket resumes once, so a replayed ClientHello finds nothing
and its early data is refused).

Bounds: at most ``max_entries`` tickets (least recently stored first out)
and none older than ``max_age`` seconds or past its own expiry -- an expired
ticket is dropped when looked up. Lifecycle: created empty; ``put`` /
``get`` / ``fetch`` as connections come and go; no I/O, no timers.
"""
from __future__ import annotations

import datetime
import time
from collections import OrderedDict
from typing import Any, Hashable, Optional, Tuple

__all__ = ["TicketStore"]


class TicketStore:
    """See the module docstring. ``TicketStore(max_entries=64,
    max_age=86400.0)``."""

    __slots__ = ("max_entries", "max_age", "_items", "stored", "used")

    def __init__(self, max_entries: int = 64, max_age: float = 86400.0) -> None:
        if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive int, got {max_entries!r}")
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age <= 0:
            raise ValueError(f"max_age must be a positive number, got {max_age!r}")
        self.max_entries = max_entries
        self.max_age = float(max_age)
        self._items: "OrderedDict[Hashable, Tuple[float, Any]]" = OrderedDict()
        self.stored = 0
        self.used = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: Hashable, ticket: Any) -> None:
        """Keep ``ticket`` for ``key`` (replacing an older one)."""
        items = self._items
        items.pop(key, None)
        items[key] = (time.monotonic(), ticket)
        self.stored += 1
        while len(items) > self.max_entries:
            items.popitem(last=False)

    def _live(self, key: Hashable, take: bool) -> Optional[Any]:
        entry = self._items.get(key)
        if entry is None:
            return None
        at, ticket = entry
        if time.monotonic() - at > self.max_age or _expired(ticket):
            del self._items[key]
            return None
        if take:
            del self._items[key]
        self.used += 1
        return ticket

    def get(self, key: Hashable) -> Optional[Any]:
        """The live ticket for ``key`` (a client: it stays until replaced)."""
        return self._live(key, False)

    def fetch(self, label: bytes) -> Optional[Any]:
        """Take out the ticket whose bytes are ``label`` (a server's
        session_ticket_fetcher: each ticket resumes once)."""
        return self._live(label, True)

    def forget(self, key: Hashable) -> None:
        """Drop the ticket of ``key`` (one the engine could not use)."""
        self._items.pop(key, None)

    def add(self, ticket: Any) -> None:
        """A server's session_ticket_handler: keep ``ticket`` by its bytes."""
        self.put(ticket.ticket, ticket)


def _expired(ticket: Any) -> bool:
    end = getattr(ticket, "not_valid_after", None)
    if end is None:
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    if end.tzinfo is None:
        now = now.replace(tzinfo=None)
    return now > end
