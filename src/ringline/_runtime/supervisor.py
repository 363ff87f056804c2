"""The supervisor of ringline's runtime: the parent of the worker processes.

Owns: the process tree of a ringline server. The supervisor opens the
listening sockets (and UDP sockets), forks one worker per configured worker
id (ringline._runtime.worker), watches them (pidfd, or polling where pidfd is
missing), respawns a worker that dies, runs the acceptor in "acceptor"
distribution (accepting in the parent and handing fds to workers over their
channels, ringline._runtime.fdpass) and coordinates shutdown. It never runs
a ringline loop: its own loop is a selector over a handful of fds (cold
path). `serve` runs it in the calling process; `launch`
(ringline._runtime.launch) runs it in a process of its own.

Lifecycle: START (RLIMIT_NOFILE, sockets, fork, wait for every worker to be
ready; any failure aborts the whole start) -> RUN (respawn on death, with a
back-off when a worker keeps dying) -> STOPPING (on SIGINT/SIGTERM under
`serve`, or a stop request from `Runtime.shutdown`: listeners closed,
MSG_STOP sent, SIGKILL for workers still alive `grace + 5 s` later) -> DONE
when no worker is left.

Invariants: every fd the acceptor accepts is handed over or closed (and
counted when refused); a worker never holds another worker's channel or
listener (the child closes them right after fork); a worker's queue of
handed-over fds never exceeds `Config.acceptor_queue`; listeners are closed
exactly once; a Unix socket path it bound is unlinked when it is done.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import functools
import logging
import os
import selectors
import signal
import socket
import stat
import threading
import time
from typing import Any, Dict, List, Optional, Type

from .._util.ratelog import RateLimitedLog
from .bind import Bind, listening_socket, parse_bind, udp_socket
from .config import Config, ensure_nofile, fit_nofile, physical_core_cpus
from .fdpass import (EXIT_CRASH, EXIT_OK, EXIT_START_FAILED, EXIT_STARTUP, MAX_FDS_PER_MSG,
                     MSG_ERROR, MSG_FDS, MSG_QUERY, MSG_READY, MSG_STATE, MSG_STOP,
                     MSG_TAKEN, STOP, TAKEN, describe_exit, send_fds)
from .handler import Handler
from .worker import Worker

__all__ = ["Supervisor", "serve", "READY_TIMEOUT"]

log = logging.getLogger("ringline.runtime")

_KILL_SLACK = 5.0       # SIGKILL workers still alive this long after the grace
READY_TIMEOUT = 60.0    # time for every worker to report ready at start
_RESPAWN_WINDOW = 10.0  # deaths within this window...
_RESPAWN_BURST = 5      # ...beyond this many: exponential back-off


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


class Supervisor:
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
        self.spec = parse_bind(bind)
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
        self.queue_full_log = RateLimitedLog(log)
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.prepared = False
        # under launch(): the SOCK_SEQPACKET link to the launching process
        # (see ringline._runtime.launch), watched by this supervisor's loop
        self.link: Optional[socket.socket] = None

    # -- start -----------------------------------------------------------

    def prepare(self) -> None:
        """Size and raise RLIMIT_NOFILE (in the process that forks next, so
        that everything it forks inherits the limit); raises naming the
        limit when the Config cannot fit."""
        if not self.prepared:
            self.cfg = fit_nofile(self.cfg)
            ensure_nofile(self.cfg)
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
            until = time.monotonic() + READY_TIMEOUT
            while not self.stopping:      # a signal may stop us while starting
                failed = [s for s in self.slots
                          if s.error is not None or (s.pid is None and not s.finished)]
                if failed:
                    s = failed[0]
                    why = s.error or describe_exit(s.exit_code)
                    raise RuntimeError(f"ringline worker {s.id} failed to start: {why}")
                if all(s.ready or s.finished for s in self.slots):
                    break
                left = until - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"ringline workers not ready after "
                                       f"{READY_TIMEOUT:.0f} s")
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
                sock = listening_socket(spec, path, cfg.backlog, False)
                self.unix_path = path
                self.address = path
                if cfg.distribution == "acceptor":
                    self.acceptor = sock
                else:
                    self.shared = sock
                    for slot in self.slots:
                        slot.listener = sock
            elif cfg.distribution == "acceptor":
                self.acceptor = listening_socket(spec, spec.sockaddr, cfg.backlog, False)
                self.address = self.acceptor.getsockname()
            else:
                sockaddr = spec.sockaddr
                for slot in self.slots:
                    slot.listener = listening_socket(spec, sockaddr, cfg.backlog, True)
                    if slot.id == 0:
                        self.address = slot.listener.getsockname()
                        sockaddr = (sockaddr[0], self.address[1]) + tuple(sockaddr[2:])
            if self.acceptor is not None:
                self.sel.register(self.acceptor, selectors.EVENT_READ, self._on_accept)
        for host, port in cfg.udp_bind:
            for slot in self.slots:
                sock = udp_socket(host, port)
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
            code = EXIT_CRASH
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
        worker = Worker(self.handler_cls, self.cfg, slot.id, slot.cpu, slot.listener,
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
            if kind == MSG_READY:
                slot.ready = True
            elif kind == MSG_ERROR:
                slot.error = msg[1:].decode("utf-8", "replace")
            elif kind == MSG_TAKEN and len(msg) >= 1 + TAKEN.size:
                (slot.taken,) = TAKEN.unpack_from(msg, 1)

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
            log.info("worker %d (pid %s) %s", slot.id, pid, describe_exit(code))
            return
        if self.client_only and code in (EXIT_OK, EXIT_START_FAILED):
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
        why = f": {slot.error}" if code == EXIT_STARTUP and slot.error else ""
        log.warning("worker %d (pid %s) %s%s; respawning%s", slot.id, pid,
                    describe_exit(code), why,
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
            for i in range(0, len(fds), MAX_FDS_PER_MSG):
                chunk = fds[i:i + MAX_FDS_PER_MSG]
                try:
                    if slot.chan is None:
                        raise ConnectionError("worker channel closed")
                    send_fds(slot.chan, MSG_FDS, chunk, socket.MSG_DONTWAIT)
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
                self.ctl_w.send(MSG_STOP + STOP.pack(value))
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
            size = 1 + STOP.size
            for i in range(0, len(data) - size + 1, size):
                (grace,) = STOP.unpack_from(data, i + 1)
                self._begin_stop(None if grace < 0 else grace)

    def state(self) -> Dict[str, Any]:
        """What a launching process reads (ringline._runtime.launch.Runtime)."""
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
            if kind == MSG_STOP and len(msg) >= 1 + STOP.size:
                (grace,) = STOP.unpack_from(msg, 1)
                self._begin_stop(None if grace < 0 else grace)
            elif kind == MSG_QUERY:
                self.send_state()

    def send_state(self) -> None:
        if self.link is None:
            return
        import pickle
        try:
            self.link.send(MSG_STATE + pickle.dumps(self.state()))
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
            slot.chan.send(MSG_STOP + STOP.pack(grace), socket.MSG_DONTWAIT)
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
    sup = Supervisor(handler_cls, bind, config, signals=in_main)
    sup.start()
    sup.run()
