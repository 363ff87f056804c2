"""One worker process of ringline's runtime: its loop, handler and connections.

Owns: everything that runs inside a forked worker: its ringline loop (its
own ring, buffer ring, connection table and timers), the handler instance
(`HandlerClass.create_for_worker(worker_id)`), a multishot ACCEPT on its
listener ("reuseport" distribution) or the fds the supervisor hands it over
the channel ("acceptor" distribution), one asyncio task per connection
running `handler.on_accept(conn)`, its UDP sockets, and its side of the
channel protocol (ringline._runtime.fdpass).

Lifecycle: STARTING (loop, handler, listener, UDP sockets; a failure is
reported with MSG_ERROR and exit code EXIT_STARTUP) -> SERVING -> STOPPING
(on MSG_STOP, SIGTERM or EOF from the supervisor: listeners closed, UDP
handlers cancelled, tracked tasks get the grace period, then are cancelled;
closing connections get a moment to flush) -> exit. Client-only programs
(bind=None, no UDP) stop when `on_start` returns.

Invariants: connections beyond `Config.max_connections` are closed and
counted, never queued; every fd received is adopted or closed; the count of
fds taken is acknowledged cumulatively (a lost ack is harmless); a
handler's exception is logged and ends only its own connection; a second
stop request can only shorten the grace period.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import traceback
from typing import Any, Dict, List, Optional, Sequence, Type

from .._conn import api
from .._conn.timers import set_timer_slots
from .._conn.udp import UdpSocket
from .._errors import ConnectionClosed
from .._loop.loop import Loop
from .._util.ratelog import RateLimitedLog
from .config import Config
from .fdpass import (EXIT_CRASH, EXIT_OK, EXIT_START_FAILED, EXIT_STARTUP, MAX_FDS_PER_MSG,
                     MSG_ERROR, MSG_FDS, MSG_READY, MSG_STOP, MSG_TAKEN, STOP, TAKEN,
                     recv_fds)
from .handler import Handler, WorkerContext

__all__ = ["Worker"]

log = logging.getLogger("ringline.runtime")

_CANCEL_WAIT = 2.0      # time for cancelled tasks to unwind
_FLUSH_WAIT = 1.0       # time for closing connections to flush their sends


class Worker:
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
        self.refuse_log = RateLimitedLog(log)
        self.tick_handle: Any = None

    # -- process entry ---------------------------------------------------

    def main(self) -> int:
        cfg = self.cfg
        if self.cpu is not None:
            try:
                os.sched_setaffinity(0, {self.cpu})
            except OSError as exc:
                log.warning("worker %d: cannot pin to cpu %d: %s",
                            self.worker_id, self.cpu, exc)
                self.cpu = None
        try:
            loop = Loop(ring_entries=cfg.sq_entries, recv_buffers=cfg.recv_buffers,
                        recv_buffer_size=cfg.recv_buffer_size)
        except BaseException as exc:
            self._startup_failed(exc)
            return EXIT_STARTUP
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                api.configure(loop, max_send_queue=cfg.max_send_queue,
                                  recv_accumulator_cap=cfg.recv_accumulator_cap,
                                  send_zc_threshold=cfg.send_zc_threshold,
                                  max_connections=cfg.max_connections)
                set_timer_slots(loop, cfg.timer_slots)
            except BaseException as exc:
                self._startup_failed(exc)
                return EXIT_STARTUP
            return loop.run_until_complete(self._run())
        except BaseException:
            log.exception("worker %d crashed", self.worker_id)
            return EXIT_CRASH
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
        self._send(MSG_ERROR + text.encode("utf-8", "replace")[:4000])

    # -- serving ---------------------------------------------------------

    async def _run(self) -> int:
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
                self.listener = api.Listener(loop, self.listen_sock, self._on_fd)
            for sock in self.udp_socks:
                udp = UdpSocket(sock, loop=loop, max_send_queue=cfg.max_send_queue)
                self.udps.append(udp)
            for udp in self.udps:
                task = loop.create_task(self._serve_udp(udp))
                self.udp_tasks.add(task)
                task.add_done_callback(self.udp_tasks.discard)
        except BaseException as exc:
            self._startup_failed(exc)
            return EXIT_STARTUP
        self._send(MSG_READY)
        start_task = self._track(loop.create_task(self._on_start()))
        code = EXIT_OK
        if self.client_only:
            await asyncio.wait([start_task, self.stop_requested],
                               return_when=asyncio.FIRST_COMPLETED)
            if start_task.done() and not self.stopping:
                if start_task.cancelled() or not start_task.result():
                    code = EXIT_START_FAILED
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
        if self.stopping:
            os.close(fd)
            return
        try:
            conn = api.adopt_fd(self.loop, fd, self.family)
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
                msg, fds = recv_fds(
                    self.chan, 64, MAX_FDS_PER_MSG,
                    socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:
                self._chan_eof()
                break
            kind = msg[:1]
            if kind == MSG_FDS:
                self.fds_received += len(fds)
                for fd in fds:
                    self._on_fd(fd)
            else:
                for fd in fds:
                    os.close(fd)
                if kind == MSG_STOP and len(msg) >= 1 + STOP.size:
                    (grace,) = STOP.unpack_from(msg, 1)
                    self.begin_stop(grace)
        if self.fds_received != taken_before:
            self._send(MSG_TAKEN + TAKEN.pack(self.fds_received))

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
        while api.stats(loop)["live"] and loop.time() < until:
            await asyncio.sleep(0.005)
