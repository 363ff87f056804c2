# cython: language_level=3, boundscheck=False, wraparound=False
"""ringline._core: the native heart of ringline's asyncio loop.

One extension (so Cython inlines across the parts), declared in _core.pxd
(every extension type apart from its body) and built from include files,
one job each, in three layers; imports between them only run downward:

_c/           the driver layer: driver.h (the one driver interface, with
              capability bits) over ring.h (io_uring by raw syscalls) and
              polldrv.h (the same SQE/CQE contract over epoll); amsend.h (the
              am_send slot of the Conn awaitable); decl.pxi (every C
              declaration, errnos by name)
_loop/        the asyncio loop over the driver
  sched.pxi     Handle / TimerHandle, ready queue, timer heap, call_* API
  ops.pxi       operations, the operation table, dispatch, the driver calls
  fdguard.pxi   sock_* operations never outlive their fd number (invariant 10)
  sockops.pxi   the operation objects of the sock_* API, the sockaddr codec
  sockapi.pxi   the sock_* coroutines and the stashes of cancelled results
  iteration.pxi LoopCore: the loop turn, wakeup, readers/writers, signals
  sendq.pxi     the one send queue of streams and native connections
  stream.pxi    stream transports (TCP, Unix, pipes)
  accept.pxi    listening sockets (multishot ACCEPT)
  datagram.pxi  datagram transports (UDP, Unix datagram)
  fileops.pxi   RingFile: file writes and syncs as driver operations
_conn/        the native connection API (ringline.Conn) over the loop
  recv.pxi      receive accumulator storage, the with_data awaitable
  slot.pxi      one connection's state; the table of them
  parts.pxi     multi-part (guarded, zero-copy) and linked (chain) sends
  conn.pxi      Conn, the user's handle, and the plumbing _conn/api.py calls
"""

cimport cython

import errno as _errno
import os as _os
import signal as _signal
import socket as _socket
import threading as _threading
import weakref as _weakref
from asyncio import events as _events
from asyncio import exceptions as _aexc
from asyncio import futures as _futures
from asyncio.log import logger as _logger

include "_loop/sched.pxi"
include "_loop/ops.pxi"
include "_loop/fdguard.pxi"
include "_loop/sockops.pxi"
include "_loop/sockapi.pxi"
include "_loop/iteration.pxi"
include "_loop/sendq.pxi"
include "_loop/stream.pxi"
include "_loop/accept.pxi"
include "_loop/datagram.pxi"
include "_loop/fileops.pxi"
include "_conn/recv.pxi"
include "_conn/slot.pxi"
include "_conn/parts.pxi"
include "_conn/conn.pxi"
