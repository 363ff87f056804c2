"""The PING/PONG line protocol without I/O: what is on the wire, how a buffer
of replies is checked and counted, how pongs resolve pending pings, and how
a server turns a buffer of request lines into answers.

Owns: the wire constants (``PING\\r\\n``, ``PONG\\r\\n``, the error line),
`ProtocolError`, `count_pongs` (client side: bytes in, number of whole PONGs
out, or ProtocolError), `settle` (the FIFO of pending pings: n PONGs in,
resolved pings out) and `answer` (server side: bytes in, answers and the
bytes consumed out). Stateless functions; no lifecycle.

Invariants: a client buffer is valid only if it is whole ``PONG\\r\\n`` lines
followed by at most a prefix of one (anything else is a ProtocolError naming
what came instead); PONGs resolve pending pings strictly in order, a
``ping_many(n)`` entry taking n of them, and a PONG with no ping pending is a
ProtocolError; a server line is at most `max_line` bytes before its newline
(beyond it `answer` says so and the caller closes the connection); every
complete request line gets exactly one answer, in order.
"""
from __future__ import annotations

from typing import Any, Deque, List, Tuple

__all__ = ["ProtocolError", "count_pongs", "settle", "answer", "PING", "PONG"]

PING = b"PING\r\n"
PONG = b"PONG\r\n"
UNKNOWN = b"ERROR unknown command\r\n"


class ProtocolError(ConnectionError):
    """The peer sent something other than PONG lines; the connection is
    closed."""


def count_pongs(data: bytes) -> int:
    """The number of whole PONG lines at the start of `data` (the rest may
    only be the beginning of one more); ProtocolError otherwise."""
    n = len(data) // 6
    # "PONG\r\n" cannot overlap itself: n occurrences in 6n bytes tile them
    if data.count(PONG, 0, 6 * n) != n:
        i = 0
        while data[6 * i:6 * i + 6] == PONG:
            i += 1
        raise ProtocolError(f"expected PONG, got {data[6 * i:6 * i + 40]!r}")
    if not PONG.startswith(data[6 * n:]):
        raise ProtocolError(f"expected PONG, got {data[6 * n:6 * n + 40]!r}")
    return n


def settle(pending: Deque[List[Any]], n: int, now: float) -> None:
    """Resolve pending pings with `n` PONGs received at `now`.

    Each entry is ``[remaining, t0, future]``; an entry is popped when its
    last PONG came and its future (if not already done) gets ``now - t0``.
    ProtocolError if PONGs are left over with nothing pending."""
    left = n
    while left:
        if not pending:
            raise ProtocolError(f"{left} PONG replies with no ping pending")
        entry = pending[0]
        take = entry[0] if entry[0] <= left else left
        entry[0] -= take
        left -= take
        if entry[0] == 0:
            pending.popleft()
            fut = entry[2]
            if not fut.done():
                fut.set_result(now - entry[1])


def answer(data: bytes, max_line: int) -> Tuple[bytes, int, bool]:
    """The server side: ``(answers, consumed, too_long)`` for a buffer of
    request lines. Each complete line (CRLF or LF) that is ``PING`` in any
    case gets ``PONG\\r\\n``, any other ``ERROR unknown command\\r\\n``;
    `consumed` is where the incomplete last line starts; `too_long` is True
    when that incomplete line is already longer than `max_line` (then
    nothing is answered, `consumed` is the whole buffer and the caller closes
    the connection)."""
    size = len(data)
    n = data.count(PING)
    if n * 6 == size:              # the common case: only whole PINGs
        return PONG * n, size, False
    out = []
    pos = 0
    while True:
        eol = data.find(b"\n", pos)
        if eol < 0:
            if size - pos > max_line:
                return b"", size, True
            break
        line = data[pos:eol].rstrip(b"\r")
        out.append(PONG if line.upper() == b"PING" else UNKNOWN)
        pos = eol + 1
    return b"".join(out), pos, False
