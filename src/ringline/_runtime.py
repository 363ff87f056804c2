"""ringline's thread-per-core runtime: `Handler`, `serve` and the supervisor
(`launch` and `Runtime`, which run the same supervisor in a process of its
own, are in ringline._launch).

Owns: the process tree of a ringline server. A parent process (the
supervisor) and one worker process per core. Each worker is pinned to its
core and runs its own ringline loop (its own ring, buffer ring, connection
table and timers); nothing is shared between workers.

Processes and channels:
  parent  -- opens the listening sockets (and UDP sockets), forks the
             workers, watches them (pidfd), respawns a worker that dies,
             runs the acceptor in "acceptor" mode and coordinates shutdown.
             It never runs a ringline loop; its own loop is a selector over
             a handful of fds (cold path).
  worker  -- a forked process: loop, handler instance
             (`HandlerClass.create_for_worker(worker_id)`), a multishot
             ACCEPT on its listener ("reuseport") or fds received from the
             parent ("acceptor"), one asyncio task per connection running
             `handler.on_accept(conn)`.
  channel -- one SOCK_SEQPACKET socketpair per worker. Parent -> worker:
             b"F" + fds (SCM_RIGHTS) and b"S" + grace (stop). Worker ->
             parent: b"R" (ready), b"E" + text (could not start), b"A" +
             count (fds taken so far, cumulative, so a lost ack is
             harmless). EOF tells each side that the other is gone.

Worker lifecycle: STARTING (loop, handler, listener, UDP sockets; failure
is reported with b"E" and exit code 3) -> SERVING -> STOPPING (listeners
closed, UDP handlers cancelled, tracked tasks get the grace period, then are
cancelled; closing connections get a moment to flush) -> exit. Client-only
programs (bind=None, no UDP) exit when `on_start` returns.

Parent lifecycle: START (RLIMIT_NOFILE, sockets, fork, wait for every worker
to be ready; any failure aborts the whole start) -> RUN (respawn on death,
with a back-off when a worker keeps dying) -> STOPPING (on SIGINT/SIGTERM
under `serve`, or `Runtime.shutdown`: listeners closed, b"S" sent, SIGKILL
for workers still alive `grace + 5 s` later) -> DONE when no worker is left.

Invariants: every fd the parent accepts is handed over or closed (and
counted when refused); a worker never holds another worker's channel or
listener (the child closes them right after fork); connections beyond
`Config.max_connections` are closed and counted, never queued; a handler's
exception is logged and ends only its own connection.
"""
from __future__ import annotations

import array
import asyncio
import collections
import errno
import functools
import logging
import os
import resource
import selectors
import signal
import socket
import stat
import struct
import threading
import time
import traceback
from typing import (TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Type,
                    Union)

from ._config import Config, fit_nofile, nofile_slack, physical_core_cpus
from ._errors import ConnectionClosed

if TYPE_CHECKING:
    from ._core import Conn
    from ._udp import UdpSocket

__all__ = ["Handler", "WorkerContext", "Runtime", "serve", "launch"]

log = logging.getLogger("ringline.runtime")

_EXIT_OK = 0            # finished: after a shutdown, or a client-only worker done
_EXIT_START_FAILED = 1  # client-only: on_start raised (logged); not respawned
_EXIT_STARTUP = 3       # the worker could not start (told the parent why)
_EXIT_CRASH = 70        # an unexpected error in the worker's own code

_KILL_SLACK = 5.0       # SIGKILL workers still alive this long after the grace
_CANCEL_WAIT = 2.0      # time for cancelled tasks to unwind
_FLUSH_WAIT = 1.0       # time for closing connections to flush their sends
_READY_TIMEOUT = 60.0   # time for every worker to report ready at start
_RESPAWN_WINDOW = 10.0  # deaths within this window...
_RESPAWN_BURST = 5      # ...beyond this many: exponential back-off
_MAX_FDS_PER_MSG = 253  # SCM_MAX_FD

_MSG_FDS, _MSG_STOP = b"F", b"S"
_MSG_READY, _MSG_ERROR, _MSG_TAKEN = b"R", b"E", b"A"
_MSG_QUERY, _MSG_STATE = b"Q", b"T"     # launching process <-> supervisor
_STOP = struct.Struct("=d")
_TAKEN = struct.Struct("=Q")

Bind = Union[None, Tuple[str, int], str, "os.PathLike[str]"]


# ---------------------------------------------------------------------------
# the user-facing handler


class Handler:
    """Base class of a ringline server (or client-only program).

    One instance per worker (`create_for_worker`); `on_accept(conn)` runs as
    a task per connection and the connection is closed when it returns or
    raises. `self.worker` is the worker's `WorkerContext` (set before
    `on_start`).
    """

    worker: "WorkerContext"

    @classmethod
    def create_for_worker(cls, worker_id: int) -> "Handler":
        """Build this worker's handler (runs in the worker process)."""
        return cls()

    async def on_start(self) -> None:
        """Runs once per worker as a task, next to accepting. With bind=None
        (and no UDP) it is the worker's whole program."""

    async def on_accept(self, conn: "Conn") -> None:
        """Serve one connection (a ringline.Conn)."""
        raise NotImplementedError(f"{type(self).__name__}.on_accept() is not defined")

    def on_tick(self, ctx: "WorkerContext") -> None:
        """Called once per loop iteration (and at least every Config.tick
        seconds when set). Must not block."""

    async def on_udp_bind(self, udp: "UdpSocket") -> None:
        """Serve one UDP socket (a ringline.UdpSocket), one per
        Config.udp_bind address; cancelled when the worker stops."""


class WorkerContext:
    """What a worker knows about itself: worker_id, cpu (None when not
    pinned), pid, loop, now() (the loop clock), stopping (True once a
    shutdown began) and stats()."""

    __slots__ = ("worker_id", "cpu", "pid", "loop", "stopping", "_worker")

    def __init__(self, worker: "_Worker") -> None:
        self._worker = worker
        self.worker_id: int = worker.worker_id
        self.cpu: Optional[int] = worker.cpu
        self.pid: int = os.getpid()
        self.loop: Any = worker.loop
        self.stopping: bool = False

    def now(self) -> float:
        return self.loop.time()

    def stats(self) -> Dict[str, Any]:
        """Counters of this worker: the runtime's (accepted, refused,
        handler_errors, fds_received) and the native connection table's."""
        from . import _native
        w = self._worker
        out: Dict[str, Any] = dict(_native.stats(w.loop))
        out.update(worker_id=w.worker_id, accepted=w.accepted, refused=w.refused,
                   handler_errors=w.handler_errors, fds_received=w.fds_received,
                   tasks=len(w.tasks))
        return out

    def __repr__(self) -> str:
        return f"<WorkerContext worker_id={self.worker_id} cpu={self.cpu} pid={self.pid}>"


# ---------------------------------------------------------------------------
# helpers


class _RateLimitedLog:
    """At most one warning per interval; the rest are summed into the next."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = 0.0
        self.suppressed = 0

    def warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        self.last = now
        extra = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        self.suppressed = 0
        log.warning(msg + extra, *args)


_FD_ARRAY = array.array("i")


def _send_fds(sock: socket.socket, msg: bytes, fds: Sequence[int], flags: int) -> int:
    # socket.send_fds() ignores its flags argument before Python 3.12
    return sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", fds))], flags)


def _recv_fds(sock: socket.socket, bufsize: int, maxfds: int,
              flags: int) -> Tuple[bytes, List[int]]:
    # socket.recv_fds() ignores its flags argument before Python 3.12
    msg, ancdata, _mflags, _addr = sock.recvmsg(
        bufsize, socket.CMSG_LEN(maxfds * _FD_ARRAY.itemsize), flags)
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, fds.tolist()


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "exited (status unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _ensure_nofile(cfg: Config) -> None:
    """Raise RLIMIT_NOFILE to fit every worker's connections, or fail naming
    the limit. cfg has been through fit_nofile (no None bounds)."""
    assert cfg.max_connections is not None
    slack = nofile_slack(cfg.workers, len(cfg.udp_bind))
    need = cfg.max_connections * cfg.workers + slack
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft == inf or soft >= need:
        return
    try:
        if hard == inf or hard >= need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        return
    except (ValueError, OSError) as exc:
        reason = exc
    raise OSError(
        errno.EMFILE,
        f"RLIMIT_NOFILE is too low: this Config needs {need} file descriptors "
        f"(max_connections={cfg.max_connections} x workers={cfg.workers} + {slack} "
        f"for the runtime) but the soft limit is {soft} and the hard limit "
        f"{'unlimited' if hard == inf else hard} cannot be raised ({reason}); raise "
        f"the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower "
        f"Config.max_connections / Config.workers (or leave max_connections "
        f"unset: it is then derived from the limit)")


def _set_timer_slots(loop: Any, slots: int) -> None:
    try:
        from . import _tasks
    except ImportError:     # the timer pool is optional
        return
    setter = getattr(_tasks, "set_timer_slots", None)
    if setter is not None:
        setter(loop, slots)


class _BindSpec:
    """Where to listen: a TCP address (family, sockaddr) or a Unix path."""

    def __init__(self, family: int, sockaddr: Any, path: Optional[str] = None) -> None:
        self.family = family
        self.sockaddr = sockaddr
        self.path = path


def _resolve_tcp(host: str, port: int) -> _BindSpec:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"bind port must be an int in 0..65535, got {port!r}")
    host = host.strip("[]") if host else ""
    if host in ("", "0.0.0.0", "*"):
        return _BindSpec(socket.AF_INET, ("0.0.0.0", port))
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve bind address {host!r}")
    family, _type, _proto, _name, sockaddr = infos[0]
    return _BindSpec(family, sockaddr)


def _parse_bind(bind: Bind) -> Optional[_BindSpec]:
    if bind is None:
        return None
    if isinstance(bind, tuple):
        if len(bind) != 2 or not isinstance(bind[0], str):
            raise TypeError(f"bind must be (host, port), 'host:port', a Unix path or "
                            f"None, got {bind!r}")
        return _resolve_tcp(bind[0], bind[1])
    if isinstance(bind, os.PathLike):
        bind = os.fspath(bind)
    if isinstance(bind, str):
        host, sep, port = bind.rpartition(":")
        if sep and port.isdigit() and "/" not in bind:
            return _resolve_tcp(host, int(port))
        if not bind:
            raise ValueError("bind path is empty")
        return _BindSpec(socket.AF_UNIX, bind, path=bind)
    raise TypeError(f"bind must be (host, port), 'host:port', a Unix path or None, "
                    f"got {bind!r}")


def _listening_socket(spec: _BindSpec, sockaddr: Any, backlog: int,
                      reuse_port: bool) -> socket.socket:
    sock = socket.socket(spec.family, socket.SOCK_STREAM)
    try:
        if spec.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def _udp_socket(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or "0.0.0.0", port, socket.AF_UNSPEC,
                               socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
    family, _type, _proto, _name, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


# ---------------------------------------------------------------------------
# the worker process


class _Worker:
    """Everything that runs inside one worker process."""

    def __init__(self, handler_cls: Type[Any], cfg: Config, worker_id: int,
                 cpu: Optional[int], listen_sock: Optional[socket.socket],
                 family: int, udp_socks: Sequence[socket.socket],
                 chan: socket.socket, client_only: bool) -> None:
        self.handler_cls = handler_cls
        self.cfg = cfg
        self.worker_id = worker_id
        self.cpu = cpu
        self.listen_sock = listen_sock
        self.family = family
        self.udp_socks = list(udp_socks)
        self.chan = chan
        self.client_only = client_only
        self.loop: Any = None
        self.handler: Any = None
        self.ctx: Optional[WorkerContext] = None
        self.listener: Any = None
        self.tasks: set = set()
        self.udp_tasks: set = set()
        self.udps: List[Any] = []
        self.accepted = 0
        self.refused = 0
        self.handler_errors = 0
        self.fds_received = 0
        self.stopping = False
        self.stop_requested: Optional[asyncio.Future] = None
        self.deadline = 0.0
        self.deadline_fut: Optional[asyncio.Future] = None
        self.deadline_handle: Any = None
        self.all_done: Optional[asyncio.Future] = None
        self.chan_open = True
        self.refuse_log = _RateLimitedLog()
        self.tick_handle: Any = None

    # -- process entry ---------------------------------------------------

    def main(self) -> int:
        from . import _native, new_event_loop
        cfg = self.cfg
        if self.cpu is not None:
            try:
                os.sched_setaffinity(0, {self.cpu})
            except OSError as exc:
                log.warning("worker %d: cannot pin to cpu %d: %s",
                            self.worker_id, self.cpu, exc)
                self.cpu = None
        try:
            loop = new_event_loop(ring_entries=cfg.sq_entries,
                                  recv_buffers=cfg.recv_buffers,
                                  recv_buffer_size=cfg.recv_buffer_size)
        except BaseException as exc:
            self._startup_failed(exc)
            return _EXIT_STARTUP
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                _native.configure(loop, max_send_queue=cfg.max_send_queue,
                                  recv_accumulator_cap=cfg.recv_accumulator_cap,
                                  send_zc_threshold=cfg.send_zc_threshold,
                                  max_connections=cfg.max_connections)
                _set_timer_slots(loop, cfg.timer_slots)
            except BaseException as exc:
                self._startup_failed(exc)
                return _EXIT_STARTUP
            return loop.run_until_complete(self._run())
        except BaseException:
            log.exception("worker %d crashed", self.worker_id)
            return _EXIT_CRASH
        finally:
            try:
                loop.close()
            except Exception:   # the process exits right after
                log.debug("worker %d: loop.close() failed", self.worker_id,
                          exc_info=True)

    def _send(self, msg: bytes) -> None:
        if not self.chan_open:
            return
        try:
            self.chan.send(msg, socket.MSG_DONTWAIT)
        except OSError:
            pass

    def _startup_failed(self, exc: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.error("worker %d could not start: %s", self.worker_id, text,
                  exc_info=exc)
        self._send(_MSG_ERROR + text.encode("utf-8", "replace")[:4000])

    # -- serving ---------------------------------------------------------

    async def _run(self) -> int:
        from . import _native
        from ._udp import UdpSocket
        loop = self.loop
        cfg = self.cfg
        try:
            handler = self.handler_cls.create_for_worker(self.worker_id)
            if handler is None:
                raise TypeError(f"{self.handler_cls.__name__}.create_for_worker() "
                                f"returned None")
            self.handler = handler
            ctx = self.ctx = WorkerContext(self)
            try:
                handler.worker = ctx
            except AttributeError:
                pass
            loop.set_exception_handler(self._exception_handler)
            self.stop_requested = loop.create_future()
            loop.add_signal_handler(signal.SIGTERM, self.begin_stop, None)
            loop.add_reader(self.chan.fileno(), self._on_chan)
            on_tick = getattr(type(handler), "on_tick", Handler.on_tick)
            if on_tick is not Handler.on_tick:
                loop._set_tick(functools.partial(handler.on_tick, ctx))
                if cfg.tick is not None:
                    self._tick_wake()
            if self.listen_sock is not None:
                self.listener = _native.Listener(loop, self.listen_sock, self._on_fd)
            for sock in self.udp_socks:
                udp = UdpSocket(sock, loop=loop, max_send_queue=cfg.max_send_queue)
                self.udps.append(udp)
            for udp in self.udps:
                task = loop.create_task(self._serve_udp(udp))
                self.udp_tasks.add(task)
                task.add_done_callback(self.udp_tasks.discard)
        except BaseException as exc:
            self._startup_failed(exc)
            return _EXIT_STARTUP
        self._send(_MSG_READY)
        start_task = self._track(loop.create_task(self._on_start()))
        code = _EXIT_OK
        if self.client_only:
            await asyncio.wait([start_task, self.stop_requested],
                               return_when=asyncio.FIRST_COMPLETED)
            if start_task.done() and not self.stopping:
                if start_task.cancelled() or not start_task.result():
                    code = _EXIT_START_FAILED
                self.begin_stop(0.0)
        else:
            await self.stop_requested
        await self._drain()
        return code

    def _tick_wake(self) -> None:
        # a timer that does nothing: it makes the loop iterate, which calls
        # the tick callback, at least every Config.tick seconds
        self.tick_handle = self.loop.call_later(self.cfg.tick, self._tick_wake)

    def _exception_handler(self, loop: Any, context: Dict[str, Any]) -> None:
        exc = context.get("exception")
        log.error("worker %d: %s", self.worker_id,
                  context.get("message", "unhandled error in the event loop"),
                  exc_info=exc if isinstance(exc, BaseException) else None)

    def _track(self, task: asyncio.Task) -> asyncio.Task:
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if (not self.tasks and self.all_done is not None
                and not self.all_done.done()):
            self.all_done.set_result(None)

    async def _on_start(self) -> bool:
        on_start = getattr(self.handler, "on_start", None)
        if on_start is None:
            return True
        try:
            await on_start()
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            self.handler_errors += 1
            log.exception("worker %d: on_start() failed", self.worker_id)
            return False

    async def _serve_udp(self, udp: Any) -> None:
        on_udp_bind = getattr(self.handler, "on_udp_bind", None)
        if on_udp_bind is None:
            return
        try:
            await on_udp_bind(udp)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.handler_errors += 1
            log.exception("worker %d: on_udp_bind(%r) failed", self.worker_id, udp)

    def _on_fd(self, fd: int) -> None:
        from . import _native
        if self.stopping:
            os.close(fd)
            return
        try:
            conn = _native.adopt_fd(self.loop, fd, self.family)
        except ConnectionRefusedError:
            # over Config.max_connections: adopt closed the fd and counted it
            self.refused += 1
            self.refuse_log.warn("worker %d: max_connections (%d) reached, "
                                 "connection refused", self.worker_id,
                                 self.cfg.max_connections)
            return
        except Exception:
            log.exception("worker %d: cannot adopt an accepted connection",
                          self.worker_id)
            return
        self.accepted += 1
        self._track(self.loop.create_task(self._serve_conn(conn)))

    async def _serve_conn(self, conn: Any) -> None:
        try:
            await self.handler.on_accept(conn)
        except asyncio.CancelledError:
            raise
        except ConnectionError as exc:
            log.debug("worker %d: connection ended: %r", self.worker_id, exc)
        except Exception:
            self.handler_errors += 1
            log.exception("worker %d: on_accept() failed", self.worker_id)
        finally:
            try:
                if conn.is_alive:
                    conn.close()
            except ConnectionClosed:
                pass

    def _on_chan(self) -> None:
        taken_before = self.fds_received
        while True:
            try:
                msg, fds = _recv_fds(
                    self.chan, 64, _MAX_FDS_PER_MSG,
                    socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:
                self._chan_eof()
                break
            kind = msg[:1]
            if kind == _MSG_FDS:
                self.fds_received += len(fds)
                for fd in fds:
                    self._on_fd(fd)
            else:
                for fd in fds:
                    os.close(fd)
                if kind == _MSG_STOP and len(msg) >= 1 + _STOP.size:
                    (grace,) = _STOP.unpack_from(msg, 1)
                    self.begin_stop(grace)
        if self.fds_received != taken_before:
            self._send(_MSG_TAKEN + _TAKEN.pack(self.fds_received))

    def _chan_eof(self) -> None:
        self.chan_open = False
        self.loop.remove_reader(self.chan.fileno())
        if not self.stopping:
            log.warning("worker %d: the parent process is gone; shutting down",
                        self.worker_id)
            self.begin_stop(None)

    # -- stopping --------------------------------------------------------

    def begin_stop(self, grace: Optional[float]) -> None:
        """Stop accepting; tracked tasks get `grace` seconds (Config.grace
        when None). A second call can only shorten the grace."""
        loop = self.loop
        grace = self.cfg.grace if grace is None or grace < 0 else grace
        deadline = loop.time() + grace
        if self.stopping:
            if deadline < self.deadline:
                self.deadline = deadline
                self.deadline_handle.cancel()
                self.deadline_handle = loop.call_at(deadline, self._deadline_reached)
            return
        self.stopping = True
        if self.ctx is not None:
            self.ctx.stopping = True
        if self.listener is not None:
            self.listener.close()
            # hand the cancel to the kernel before the fd goes away
            submit = getattr(loop, "_submit_pending", None)
            if submit is not None:
                submit()
        if self.listen_sock is not None:
            self.listen_sock.close()
        for task in list(self.udp_tasks):
            task.cancel()
        self.deadline = deadline
        self.deadline_fut = loop.create_future()
        self.deadline_handle = loop.call_at(deadline, self._deadline_reached)
        self.all_done = loop.create_future()
        if not self.tasks:
            self.all_done.set_result(None)
        if self.stop_requested is not None and not self.stop_requested.done():
            self.stop_requested.set_result(None)

    def _deadline_reached(self) -> None:
        if self.deadline_fut is not None and not self.deadline_fut.done():
            self.deadline_fut.set_result(None)

    async def _drain(self) -> None:
        from . import _native
        loop = self.loop
        assert self.all_done is not None and self.deadline_fut is not None
        await asyncio.wait([self.all_done, self.deadline_fut],
                           return_when=asyncio.FIRST_COMPLETED)
        left = [t for t in self.tasks if not t.done()]
        if left:
            log.info("worker %d: grace period over, cancelling %d task(s)",
                     self.worker_id, len(left))
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=_CANCEL_WAIT)
        if self.udp_tasks:
            await asyncio.wait(list(self.udp_tasks), timeout=_CANCEL_WAIT)
        for udp in self.udps:
            udp.close()
        # tasks the handler spawned itself
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks(loop) if t is not me and not t.done()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=_CANCEL_WAIT)
        if self.tick_handle is not None:
            self.tick_handle.cancel()
        # connections closed by their tasks flush what they queued
        until = loop.time() + _FLUSH_WAIT
        while _native.stats(loop)["live"] and loop.time() < until:
            await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------
# the parent process


class _Slot:
    """The parent's view of one worker id (one process at a time)."""

    def __init__(self, worker_id: int, cpu: Optional[int]) -> None:
        self.id = worker_id
        self.cpu = cpu
        self.listener: Optional[socket.socket] = None
        self.udp_socks: List[socket.socket] = []
        self.pid: Optional[int] = None
        self.pidfd: Optional[int] = None
        self.chan: Optional[socket.socket] = None
        self.ready = False
        self.error: Optional[str] = None
        self.exit_code: Optional[int] = None
        self.finished = False
        self.sent = 0
        self.taken = 0
        self.deaths: collections.deque = collections.deque()
        self.respawn_at: Optional[float] = None
        self.spawned = 0


class _Supervisor:
    def __init__(self, handler_cls: Type[Any], bind: Bind, config: Optional[Config],
                 *, signals: bool) -> None:
        if config is None:
            config = Config()
        if not isinstance(config, Config):
            raise TypeError(f"config must be a ringline.Config, got {config!r}")
        if not isinstance(handler_cls, type):
            raise TypeError(f"serve()/launch() need a Handler class, got {handler_cls!r}")
        self.handler_cls = handler_cls
        self.cfg = config
        self.spec = _parse_bind(bind)
        self.client_only = self.spec is None and not config.udp_bind
        self.signals = signals
        self.slots: List[_Slot] = []
        self.sel = selectors.DefaultSelector()
        self.ctl_r, self.ctl_w = socket.socketpair()
        self.ctl_r.setblocking(False)
        self.ctl_w.setblocking(False)
        self.sig_r: Optional[socket.socket] = None
        self.sig_w: Optional[socket.socket] = None
        self.old_handlers: Dict[int, Any] = {}
        self.old_wakeup: Optional[int] = None
        self.acceptor: Optional[socket.socket] = None   # acceptor mode: parent listens
        self.shared: Optional[socket.socket] = None     # Unix path: one shared listener
        self.unix_path: Optional[str] = None
        self.address: Any = None
        self.udp_addresses: List[Any] = []
        self.started = False
        self.stopping = False
        self.stop_deadline = 0.0
        self.kill_at: Optional[float] = None
        self.accept_resume_at: Optional[float] = None
        self.use_pidfd = hasattr(os, "pidfd_open")
        self.rr = 0
        self.counters = {"accepted": 0, "refused_queue_full": 0, "respawns": 0,
                         "deaths": 0}
        self.queue_full_log = _RateLimitedLog()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.prepared = False
        # under launch(): the SOCK_SEQPACKET link to the launching process
        # (see ringline._launch), watched by this supervisor's loop
        self.link: Optional[socket.socket] = None

    # -- start -----------------------------------------------------------

    def prepare(self) -> None:
        """Size and raise RLIMIT_NOFILE (in the process that forks next, so
        that everything it forks inherits the limit); raises naming the
        limit when the Config cannot fit."""
        if not self.prepared:
            self.cfg = fit_nofile(self.cfg)
            _ensure_nofile(self.cfg)
            self.prepared = True

    def start(self) -> None:
        try:
            self.prepare()
            cfg = self.cfg
            cpus = physical_core_cpus()
            self.slots = [_Slot(i, cpus[i % len(cpus)] if cfg.pin_to_core else None)
                          for i in range(cfg.workers)]
            self._open_sockets()
            self.sel.register(self.ctl_r, selectors.EVENT_READ, self._on_ctl)
            if self.link is not None:
                self.sel.register(self.link, selectors.EVENT_READ, self._on_link)
            if self.signals:
                self._install_signals()
            for slot in self.slots:
                self._spawn(slot)
            until = time.monotonic() + _READY_TIMEOUT
            while not self.stopping:      # a signal may stop us while starting
                failed = [s for s in self.slots
                          if s.error is not None or (s.pid is None and not s.finished)]
                if failed:
                    s = failed[0]
                    why = s.error or _describe_exit(s.exit_code)
                    raise RuntimeError(f"ringline worker {s.id} failed to start: {why}")
                if all(s.ready or s.finished for s in self.slots):
                    break
                left = until - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"ringline workers not ready after "
                                       f"{_READY_TIMEOUT:.0f} s")
                self._step(min(left, 0.2))
            self.started = True
        except BaseException:
            self._abort()
            raise
        log.info("ringline runtime: %d worker(s), %s distribution, listening on %r",
                 cfg.workers, cfg.distribution, self.address)

    def _open_sockets(self) -> None:
        cfg, spec = self.cfg, self.spec
        if spec is not None:
            if spec.family == socket.AF_UNIX:
                path = spec.path
                assert path is not None
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.unlink(path)   # a stale socket of an earlier run
                except FileNotFoundError:
                    pass
                sock = _listening_socket(spec, path, cfg.backlog, False)
                self.unix_path = path
                self.address = path
                if cfg.distribution == "acceptor":
                    self.acceptor = sock
                else:
                    self.shared = sock
                    for slot in self.slots:
                        slot.listener = sock
            elif cfg.distribution == "acceptor":
                self.acceptor = _listening_socket(spec, spec.sockaddr, cfg.backlog, False)
                self.address = self.acceptor.getsockname()
            else:
                sockaddr = spec.sockaddr
                for slot in self.slots:
                    slot.listener = _listening_socket(spec, sockaddr, cfg.backlog, True)
                    if slot.id == 0:
                        self.address = slot.listener.getsockname()
                        sockaddr = (sockaddr[0], self.address[1]) + tuple(sockaddr[2:])
            if self.acceptor is not None:
                self.sel.register(self.acceptor, selectors.EVENT_READ, self._on_accept)
        for host, port in cfg.udp_bind:
            for slot in self.slots:
                sock = _udp_socket(host, port)
                slot.udp_socks.append(sock)
                if slot.id == 0:
                    port = sock.getsockname()[1]
                    self.udp_addresses.append(sock.getsockname())

    def _install_signals(self) -> None:
        self.sig_r, self.sig_w = socket.socketpair()
        self.sig_r.setblocking(False)
        self.sig_w.setblocking(False)
        self.old_wakeup = signal.set_wakeup_fd(self.sig_w.fileno(),
                                               warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.old_handlers[sig] = signal.signal(sig, _ignore_signal)
        self.sel.register(self.sig_r, selectors.EVENT_READ, self._on_signal)

    def _restore_signals(self) -> None:
        if self.sig_r is None:
            return
        for sig, old in self.old_handlers.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self.old_wakeup if self.old_wakeup is not None else -1)

    # -- workers ---------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        slot.ready = False
        slot.error = None
        slot.exit_code = None
        slot.sent = slot.taken = 0
        pid = os.fork()
        if pid == 0:   # the worker
            code = _EXIT_CRASH
            try:
                parent_end.close()
                code = self._child(slot, child_end)
            except BaseException:
                try:
                    log.exception("worker %d crashed", slot.id)
                except BaseException:
                    pass
            finally:
                os._exit(code)
        child_end.close()
        parent_end.setblocking(False)
        slot.pid = pid
        slot.chan = parent_end
        slot.spawned += 1
        self.sel.register(parent_end, selectors.EVENT_READ,
                          functools.partial(self._on_chan, slot))
        if self.use_pidfd:
            try:
                slot.pidfd = os.pidfd_open(pid)
                self.sel.register(slot.pidfd, selectors.EVENT_READ,
                                  functools.partial(self._on_pidfd, slot))
            except OSError:
                self.use_pidfd = False
                slot.pidfd = None

    def _child(self, slot: _Slot, chan: socket.socket) -> int:
        # drop what belongs to the parent: signal plumbing, other workers'
        # channels and listeners, the acceptor's listener
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent coordinates
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        asyncio.events._set_running_loop(None)
        try:
            self.sel.close()
        except Exception:
            pass
        mine = {id(slot.listener)} | {id(s) for s in slot.udp_socks}
        for sock in [self.ctl_r, self.ctl_w, self.sig_r, self.sig_w, self.acceptor,
                     self.link]:
            if sock is not None:
                sock.close()
        for other in self.slots:
            if other.chan is not None:
                other.chan.close()
            if other.pidfd is not None:
                os.close(other.pidfd)
            if other is slot:
                continue
            for sock in [other.listener, *other.udp_socks]:
                if sock is not None and id(sock) not in mine:
                    sock.close()
        family = self.spec.family if self.spec is not None else socket.AF_INET
        worker = _Worker(self.handler_cls, self.cfg, slot.id, slot.cpu, slot.listener,
                         family, slot.udp_socks, chan, self.client_only)
        return worker.main()

    def _on_chan(self, slot: _Slot) -> None:
        chan = slot.chan
        if chan is None:
            return
        while True:
            try:
                msg = chan.recv(8192)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:
                self._close_chan(slot)
                if not self.use_pidfd:
                    self._poll_children()
                return
            kind = msg[:1]
            if kind == _MSG_READY:
                slot.ready = True
            elif kind == _MSG_ERROR:
                slot.error = msg[1:].decode("utf-8", "replace")
            elif kind == _MSG_TAKEN and len(msg) >= 1 + _TAKEN.size:
                (slot.taken,) = _TAKEN.unpack_from(msg, 1)

    def _close_chan(self, slot: _Slot) -> None:
        if slot.chan is not None:
            try:
                self.sel.unregister(slot.chan)
            except (KeyError, ValueError):
                pass
            slot.chan.close()
            slot.chan = None

    def _on_pidfd(self, slot: _Slot) -> None:
        if slot.pid is None:
            return
        try:
            pid, status = os.waitpid(slot.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = slot.pid, None
        if pid == 0:
            return
        self._exited(slot, None if status is None else os.waitstatus_to_exitcode(status))

    def _poll_children(self) -> None:
        for slot in self.slots:
            if slot.pid is not None:
                self._on_pidfd(slot)

    def _exited(self, slot: _Slot, code: Optional[int]) -> None:
        pid = slot.pid
        slot.pid = None
        slot.exit_code = code
        if slot.pidfd is not None:
            try:
                self.sel.unregister(slot.pidfd)
            except (KeyError, ValueError):
                pass
            os.close(slot.pidfd)
            slot.pidfd = None
        # read what the worker said last (an error report) before closing
        self._on_chan(slot)
        self._close_chan(slot)
        if self.stopping:
            log.info("worker %d (pid %s) %s", slot.id, pid, _describe_exit(code))
            return
        if self.client_only and code in (_EXIT_OK, _EXIT_START_FAILED):
            slot.finished = True
            log.info("worker %d (pid %s) finished", slot.id, pid)
            return
        if not self.started:
            return     # start() reports it
        self.counters["deaths"] += 1
        now = time.monotonic()
        slot.deaths.append(now)
        while slot.deaths and slot.deaths[0] < now - _RESPAWN_WINDOW:
            slot.deaths.popleft()
        burst = len(slot.deaths) - _RESPAWN_BURST
        delay = 0.0 if burst < 0 else min(30.0, 0.5 * 2 ** burst)
        why = f": {slot.error}" if code == _EXIT_STARTUP and slot.error else ""
        log.warning("worker %d (pid %s) %s%s; respawning%s", slot.id, pid,
                    _describe_exit(code), why,
                    f" in {delay:.1f} s" if delay else "")
        slot.respawn_at = now + delay

    # -- acceptor --------------------------------------------------------

    def _pick(self) -> Optional[_Slot]:
        slots, cap = self.slots, self.cfg.acceptor_queue
        assert cap is not None          # fit_nofile filled it at start
        n = len(slots)
        for i in range(n):
            slot = slots[(self.rr + i) % n]
            if slot.chan is not None and slot.sent - slot.taken < cap:
                self.rr = (self.rr + i + 1) % n
                return slot
        return None

    def _on_accept(self) -> None:
        sock = self.acceptor
        if sock is None:
            return
        batches: Dict[_Slot, List[int]] = {}
        for _ in range(512):
            try:
                fd, _addr = sock._accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                log.error("acceptor: accept() failed: %s; pausing for 0.1 s", exc)
                self.sel.unregister(sock)
                self.accept_resume_at = time.monotonic() + 0.1
                break
            self.counters["accepted"] += 1
            slot = self._pick()
            if slot is None:
                os.close(fd)
                self.counters["refused_queue_full"] += 1
                self.queue_full_log.warn("acceptor: every worker's queue is full "
                                         "(acceptor_queue=%d); connection refused",
                                         self.cfg.acceptor_queue)
                continue
            os.set_blocking(fd, False)
            slot.sent += 1
            batches.setdefault(slot, []).append(fd)
        for slot, fds in batches.items():
            for i in range(0, len(fds), _MAX_FDS_PER_MSG):
                chunk = fds[i:i + _MAX_FDS_PER_MSG]
                try:
                    if slot.chan is None:
                        raise ConnectionError("worker channel closed")
                    _send_fds(slot.chan, _MSG_FDS, chunk, socket.MSG_DONTWAIT)
                except OSError as exc:
                    slot.sent -= len(chunk)
                    self.counters["refused_queue_full"] += len(chunk)
                    self.queue_full_log.warn("acceptor: cannot hand fds to worker %d "
                                             "(%s); connection(s) refused", slot.id, exc)
                finally:
                    for fd in chunk:
                        os.close(fd)

    # -- control and signals ---------------------------------------------

    def request_stop(self, grace: Optional[float]) -> None:
        """Thread-safe: ask the supervisor loop to shut down."""
        value = -1.0 if grace is None else float(grace)
        with self.lock:
            try:
                self.ctl_w.send(_MSG_STOP + _STOP.pack(value))
            except OSError:
                pass

    def _on_ctl(self) -> None:
        while True:
            try:
                data = self.ctl_r.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            size = 1 + _STOP.size
            for i in range(0, len(data) - size + 1, size):
                (grace,) = _STOP.unpack_from(data, i + 1)
                self._begin_stop(None if grace < 0 else grace)

    def state(self) -> Dict[str, Any]:
        """What a launching process reads (ringline._launch.Runtime)."""
        return {"workers": [s.pid for s in self.slots],
                "exit_codes": [s.exit_code for s in self.slots],
                "counters": dict(self.counters), "address": self.address,
                "udp_addresses": list(self.udp_addresses), "config": self.cfg}

    def _on_link(self) -> None:
        link = self.link
        if link is None:
            return
        while True:
            try:
                msg = link.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:
                # the launching process is gone (or closed its Runtime): a
                # runtime nobody can stop any more stops now, gracefully
                self._close_link()
                if not self.stopping:
                    log.warning("the process that launched this runtime is gone; "
                                "shutting down")
                    self._begin_stop(None)
                return
            kind = msg[:1]
            if kind == _MSG_STOP and len(msg) >= 1 + _STOP.size:
                (grace,) = _STOP.unpack_from(msg, 1)
                self._begin_stop(None if grace < 0 else grace)
            elif kind == _MSG_QUERY:
                self.send_state()

    def send_state(self) -> None:
        if self.link is None:
            return
        import pickle
        try:
            self.link.send(_MSG_STATE + pickle.dumps(self.state()))
        except OSError:
            pass

    def _close_link(self) -> None:
        if self.link is not None:
            try:
                self.sel.unregister(self.link)
            except (KeyError, ValueError):
                pass
            self.link.close()
            self.link = None

    def _on_signal(self) -> None:
        assert self.sig_r is not None
        try:
            data = self.sig_r.recv(256)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum in (signal.SIGINT, signal.SIGTERM):
                if self.stopping:
                    log.warning("%s again: stopping now", signal.Signals(signum).name)
                    self._begin_stop(0.0)
                else:
                    log.info("%s: graceful shutdown", signal.Signals(signum).name)
                    self._begin_stop(None)

    def _begin_stop(self, grace: Optional[float]) -> None:
        grace = self.cfg.grace if grace is None else max(0.0, grace)
        now = time.monotonic()
        if self.stopping:
            if now + grace >= self.stop_deadline:
                return
        else:
            self.stopping = True
            self._close_listeners()
            for slot in self.slots:
                slot.respawn_at = None
        self.stop_deadline = now + grace
        self.kill_at = now + grace + _KILL_SLACK
        for slot in self.slots:
            if slot.pid is not None:
                self._send_stop(slot, grace)

    def _send_stop(self, slot: _Slot, grace: float) -> None:
        try:
            if slot.chan is None:
                raise ConnectionError("channel closed")
            slot.chan.send(_MSG_STOP + _STOP.pack(grace), socket.MSG_DONTWAIT)
        except OSError:
            try:
                os.kill(slot.pid, signal.SIGTERM)   # the worker uses Config.grace
            except (ProcessLookupError, TypeError):
                pass

    def _close_listeners(self) -> None:
        if self.acceptor is not None:
            try:
                self.sel.unregister(self.acceptor)
            except (KeyError, ValueError):
                pass
            self.acceptor.close()
        closed = set()
        for slot in self.slots:
            for sock in [slot.listener, *slot.udp_socks]:
                if sock is not None and id(sock) not in closed:
                    closed.add(id(sock))
                    sock.close()

    # -- the supervisor loop ---------------------------------------------

    def _step(self, timeout: Optional[float]) -> None:
        for key, _mask in self.sel.select(timeout):
            key.data()
        if not self.use_pidfd:
            self._poll_children()
        self._timers()

    def _timers(self) -> None:
        now = time.monotonic()
        if self.accept_resume_at is not None and now >= self.accept_resume_at:
            self.accept_resume_at = None
            if self.acceptor is not None and not self.stopping:
                self.sel.register(self.acceptor, selectors.EVENT_READ, self._on_accept)
        if not self.stopping:
            for slot in self.slots:
                if slot.respawn_at is not None and now >= slot.respawn_at:
                    slot.respawn_at = None
                    self.counters["respawns"] += 1
                    self._spawn(slot)
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            for slot in self.slots:
                if slot.pid is not None:
                    log.warning("worker %d (pid %d) still running after the grace "
                                "period; killing it", slot.id, slot.pid)
                    try:
                        os.kill(slot.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def _next_timeout(self) -> float:
        now = time.monotonic()
        times = [t for t in [self.accept_resume_at, self.kill_at,
                             *(s.respawn_at for s in self.slots)] if t is not None]
        timeout = 1.0 if self.use_pidfd else 0.1
        if times:
            timeout = max(0.0, min(timeout, min(times) - now))
        return timeout

    def _finished(self) -> bool:
        return all(s.pid is None and s.respawn_at is None for s in self.slots)

    def run(self) -> None:
        try:
            while not self._finished():
                self._step(self._next_timeout())
        finally:
            self._cleanup()
            self.done.set()

    def _abort(self) -> None:
        """A failed start: kill what was spawned and release everything."""
        self.stopping = True
        for slot in self.slots:
            if slot.pid is not None:
                try:
                    os.kill(slot.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for slot in self.slots:
            if slot.pid is not None:
                try:
                    os.waitpid(slot.pid, 0)
                except ChildProcessError:
                    pass
                slot.pid = None
        self._cleanup()

    def release_in_launcher(self) -> None:
        """launch()'s caller after forking the supervisor process: drop the
        copies of the supervisor's plumbing (nothing else is open yet)."""
        self.sel.close()
        self.ctl_r.close()
        self.ctl_w.close()

    def _cleanup(self) -> None:
        if not self.stopping:
            self.stopping = True
        try:
            self._close_listeners()
        except Exception:
            pass
        for slot in self.slots:
            self._close_chan(slot)
            if slot.pidfd is not None:
                os.close(slot.pidfd)
                slot.pidfd = None
        self._restore_signals()
        for sock in (self.sig_r, self.sig_w, self.ctl_r):
            if sock is not None:
                sock.close()
        with self.lock:        # request_stop() writes ctl_w from other threads
            self.ctl_w.close()
        try:
            self.sel.close()
        except Exception:
            pass
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
            self.unix_path = None


def _ignore_signal(signum: int, frame: Any) -> None:
    """The supervisor's SIGINT/SIGTERM handler: the signal number reaches the
    supervisor loop through the wakeup fd."""


# ---------------------------------------------------------------------------
# public entry points


def serve(handler_cls: Type[Handler], bind: Bind, config: Optional[Config] = None) -> None:
    """Run the runtime in this process until it shuts down: SIGINT or SIGTERM
    start a graceful shutdown (a second one cancels at once); with bind=None
    and no UDP, until every worker's on_start returned."""
    in_main = threading.current_thread() is threading.main_thread()
    sup = _Supervisor(handler_cls, bind, config, signals=in_main)
    sup.start()
    sup.run()


# launch() and Runtime live in ringline._launch (the supervisor runs in a
# process of its own there); imported last, as that module uses this one
from ._launch import Runtime, launch  # noqa: E402
