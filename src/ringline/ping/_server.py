"""The server side of the PING/PONG protocol: `PingHandler`, a ready-made
`ringline.Handler` (``ringline.serve(PingHandler, ("0.0.0.0", 7000))``).

Owns: the handler's per-connection loop: each receive batch goes through
`_proto.answer` and all its answers go out in one send.

Lifecycle: `on_accept(conn)` runs for one connection until the peer closes
it, the connection fails, or a line exceeds `max_line` (then the Conn is
closed).

Invariants: see `_proto.answer`: one answer per complete line, in order; an
endless line never makes the handler buffer more than `max_line` bytes of it.
"""
from __future__ import annotations

from typing import Any

from ._proto import answer

from .._runtime.handler import Handler as _HandlerBase

__all__ = ["PingHandler"]


class PingHandler(_HandlerBase):  # type: ignore[misc,valid-type]
    """A `ringline.Handler` answering ``PONG\\r\\n`` to each ``PING`` line:
    ``ringline.serve(PingHandler, ("0.0.0.0", 7000))``."""

    max_line = 1024

    async def on_accept(self, conn: Any) -> None:
        on_data = self._make_parser(conn)
        try:
            while await conn.with_data(on_data):
                pass
        except ConnectionError:
            pass        # the peer went away, or on_data closed an endless line

    def _make_parser(self, conn: Any) -> Any:
        send = conn.send_nowait
        max_line = self.max_line

        def on_data(view: memoryview) -> int:
            out, pos, too_long = answer(bytes(view), max_line)
            if too_long:
                conn.close()
            elif out:
                send(out)
            return pos
        return on_data
