"""ringline._loop: the asyncio event loop over the native core.

Owns nothing itself; it names the parts:

``loop``        Loop: asyncio's API (BaseEventLoop's cold paths reused) over the
                native LoopCore of ``ringline._core``
``transports``  the asyncio transport classes Loop hands to protocols (stream,
                pipe, datagram, subprocess): Python faces on the native cores
``backend``     which driver a new loop gets (io_uring or the poll backend),
                why, and the report of what the kernel granted

The native parts of the loop (``*.pxi`` here) are compiled into
``ringline._core``; see ``_core.pyx`` for their map.
"""
from .loop import Loop

__all__ = ["Loop"]
