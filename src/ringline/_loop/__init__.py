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

Lifecycle: importing the package imports ``loop`` (and through it the
native core, ``backend`` and ``transports``); no loop is created.

Invariants: nothing in this layer imports the connection layer, the runtime,
a client or the package face (tests/test_layers.py).
"""
from .loop import Loop

__all__ = ["Loop"]
