"""The QUIC knobs of ringline.http3: ``QuicLimits``.

Owns the validated, immutable settings an HTTP/3 Client hands to each QUIC
connection it opens; the HTTP bounds (header bytes and count, body bytes,
decoding caps, concurrent streams) are ringline.http's ``Bounds``, reused as
they are. Nothing here does I/O.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["QuicLimits", "DEFAULT_QUIC"]


class QuicLimits:
    """QUIC settings and the receive bound of one HTTP/3 connection.

    ==========================  =========  =========================================
    knob                        default    meaning
    ==========================  =========  =========================================
    max_buffered_bytes          8 MiB      response body bytes received but not yet
                                           read, over all streams of a connection;
                                           past it the connection stops feeding
                                           datagrams to the engine (no window is
                                           reopened) until reads bring it under half
    max_data                    16 MiB     the connection receive window (MAX_DATA)
    max_stream_data             4 MiB      each stream's receive window
    idle_timeout                30 s       the QUIC idle timeout
    engine                      None       "qh3" or "aioquic" (None: qh3 if
                                           installed)
    gso                         None       UDP GSO sends (None: RINGLINE_QUIC_GSO,
                                           on by default, where the kernel has it)
    session_tickets             True       keep the servers' session tickets (a
                                           TicketStore per Client, 64 origins,
                                           a day at most) and resume with them
    early_data                  None       with a ticket allowing it, send GET and
                                           HEAD requests as 0-RTT early data (a
                                           refused one is sent again after the
                                           handshake by the engine); None: on
                                           with aioquic, off with qh3 (qh3 2.1
                                           sometimes loses its 1-RTT key on a
                                           0-RTT connection: see docs/http3.md)
    ==========================  =========  =========================================
    """

    __slots__ = ("max_buffered_bytes", "max_data", "max_stream_data", "idle_timeout", "engine",
                 "gso", "session_tickets", "early_data")

    def __init__(self, *, max_buffered_bytes: int = 8 << 20, max_data: int = 16 << 20,
                 max_stream_data: int = 4 << 20, idle_timeout: float = 30.0,
                 engine: Optional[str] = None, gso: Optional[bool] = None,
                 session_tickets: bool = True, early_data: Optional[bool] = None) -> None:
        for name, v in (("max_buffered_bytes", max_buffered_bytes), ("max_data", max_data),
                        ("max_stream_data", max_stream_data)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)) \
                or idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be a positive number, got {idle_timeout!r}")
        if engine not in (None, "qh3", "aioquic"):
            raise ValueError(f"engine must be None, 'qh3' or 'aioquic', got {engine!r}")
        self.max_buffered_bytes = max_buffered_bytes
        self.max_data = max_data
        self.max_stream_data = max_stream_data
        self.idle_timeout = float(idle_timeout)
        if gso not in (None, True, False):
            raise ValueError(f"gso must be None, True or False, got {gso!r}")
        if not isinstance(session_tickets, bool):
            raise ValueError(f"session_tickets must be True or False, got {session_tickets!r}")
        if early_data not in (None, True, False):
            raise ValueError(f"early_data must be None, True or False, got {early_data!r}")
        self.engine = engine
        self.gso = gso
        self.session_tickets = session_tickets
        self.early_data = early_data

    def __repr__(self) -> str:
        return "QuicLimits(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


DEFAULT_QUIC = QuicLimits()
