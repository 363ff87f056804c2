# cython: language_level=3, boundscheck=False, wraparound=False
"""ringline._core: the native heart of ringline's asyncio loop.

One extension built from include files, one per concern:

- _decl.pxi      declarations of the C ring layer (_ring.h), libc, C-API
- _handles.pxi   Handle / TimerHandle
- _loopcore.pxi  LoopCore: ready queue, timer heap, operation table, the
                 iteration, readers/writers, signals, socket operations
- _fdguard.pxi   the registry that keeps sock_* operations from outliving
                 their socket's fd number (invariant 10)
- _sockops.pxi   the operation objects behind the sock_* API and sockaddr codec
- _transport.pxi stream transports and servers over the ring
- _datagram.pxi  datagram (UDP, Unix datagram) transports
- _conn.pxi      the native connection API (ringline.Conn), send chains,
                 guards, the multishot listener of the native runtime
"""

include "_decl.pxi"
include "_handles.pxi"
include "_loopcore.pxi"
include "_fdguard.pxi"
include "_sockops.pxi"
include "_transport.pxi"
include "_datagram.pxi"
include "_conn.pxi"
