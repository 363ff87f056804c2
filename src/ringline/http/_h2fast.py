"""An HTTP/2 connection on the native frame engine (``_h2frames.H2Engine``)
instead of the ``h2`` library: what ringline.grpc's channels open.

Owns ``FastH2Connection``: ``H2Connection`` (streams, waits, sending,
bodies, pings, GOAWAY handling, the flood and header bounds) with the frame
layer swapped: the engine parses and checks the frames and keeps the stream
states and windows, and ``_dispatch`` here hands its events (plain tuples)
to ``H2Connection``'s per-event handlers. HPACK stays ``hpack``'s (the
caller may wrap the encoder and decoder: ``engine.encoder`` /
``engine.decoder``).

Lifecycle and invariants are ``H2Connection``'s (see ``_h2conn``); in
addition the engine's own bounds hold (a frame above our max frame size, a
header block above ``max_header_bytes`` bytes or ``MAX_HEADER_FRAMES``
frames, any protocol or flow-control violation fails the connection with
GOAWAY and a clear error; see ``_h2frames``), and a header block is
validated (``_validate``, h2's rules) before its stream sees it; a stream
that ends here while our side is still open (the server answered before
the request was all sent) is released in the engine with RST_STREAM
NO_ERROR, so the engine's stream table never outgrows the calls in flight.
"""
from __future__ import annotations

from typing import Any, List, Tuple

import hpack  # type: ignore[import-untyped]

from ._config import Bounds
from ._h2conn import _CONN_WINDOW, _INITIAL_STREAMS, _STREAM_WINDOW, H2Connection
from ._h2frames import (EV_DATA, EV_GOAWAY, EV_HEADERS, EV_PING_ACK, EV_RESET, EV_SETTINGS,
                        EV_WINDOW, H2Engine)

__all__ = ["FastH2Connection", "open_fast_h2"]


async def open_fast_h2(raw: Any, pool: Any) -> "FastH2Connection":
    c = FastH2Connection(raw, pool, pool.bounds)
    c.start()
    return c


class FastH2Connection(H2Connection):
    __slots__ = ()

    def _engine(self, bounds: Bounds) -> Any:
        decoder = hpack.Decoder(max_header_list_size=bounds.max_header_bytes)
        decoder.max_allowed_table_size = bounds.hpack_table_size
        return H2Engine(_STREAM_WINDOW, _CONN_WINDOW, _INITIAL_STREAMS, bounds.hpack_table_size,
                        bounds.max_header_bytes, hpack.Encoder(), decoder)

    def _initiate(self) -> None:
        self.h2.initiate()

    def _remote_max_streams(self) -> int:
        return self.h2.remote_max_concurrent_streams  # type: ignore[no-any-return]

    def _send_head(self, sid: int, hdrs: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        self.h2.send_headers(sid, hdrs, end_stream)

    def _end_stream(self, s: Any) -> None:
        H2Connection._end_stream(self, s)
        self.h2.release(s.sid)

    def _receive(self, view: memoryview) -> List[Any]:
        return self.h2.receive(view)  # type: ignore[no-any-return]

    def _dispatch(self, events: List[Any]) -> bool:
        for e in events:
            k = e[0]
            if k == EV_DATA:
                self._on_body(e[1], e[2], e[3], e[4])
            elif k == EV_HEADERS:
                if e[4]:
                    self._on_trailers(e[1], e[2])
                else:
                    self._on_head(e[1], e[2])
                if e[3]:
                    self._on_ended(e[1])
            elif k == EV_WINDOW:
                self._on_window(e[1], e[2])
            elif k == EV_RESET:
                self._on_reset(e[1], e[2])
            elif k == EV_GOAWAY:
                if self._on_goaway(e[1], e[2]):
                    return True
            else:           # SETTINGS, its ACK, PING, PING ACK, PRIORITY, unknown
                self._flood()
                if k == EV_PING_ACK:
                    self._on_ping_ack(e[1])
                elif k == EV_SETTINGS:
                    self._on_settings()
        return False
