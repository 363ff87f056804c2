"""`ringline.launch()` and the `Runtime` handle it returns.

Owns: the launching process's side of a runtime started in the background.
The supervisor (ringline._runtime.supervisor) runs in a process of its own,
forked by launch() from the calling thread, and forks the workers from
there. So every fork, the first ones and each respawn, happens in a process
with a single thread: forking from a helper thread of the caller (or while
the caller has threads) can deadlock the child on a lock another thread
held, and Python 3.12+ warns about it (DeprecationWarning).

Processes: caller --fork--> supervisor --fork--> worker 0..N-1. The caller
and the supervisor share one SOCK_SEQPACKET link:
  caller -> supervisor: MSG_STOP + grace (shut down), MSG_QUERY (send the
                        state)
  supervisor -> caller: MSG_STATE + pickled state (when ready, on each
                        MSG_QUERY, and once more when every worker has
                        exited), MSG_ERROR + pickled exception (the start
                        failed)
(the message kinds are ringline._runtime.fdpass's)
EOF on the link tells the supervisor that the caller is gone: it shuts the
runtime down gracefully.

Lifecycle of a Runtime: STARTING (launch() blocks until the supervisor says
ready, or raises its start error after reaping it) -> RUNNING -> (shutdown)
-> EXITED (join() saw the supervisor exit, reaped it, read its last state
and closed the link). A Runtime still running when the interpreter exits is
shut down and joined by an atexit hook; until then the module keeps it
referenced, so dropping the object does not stop the server.

Invariants: the caller's copies of the listening sockets and of the
supervisor's own plumbing are closed right after the fork; the link and the
pidfd are closed exactly once, by join(); state reads never block longer
than _QUERY_TIMEOUT and fall back to the last state seen.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import pickle
import select
import signal
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Set, Type

from .bind import Bind
from .config import Config
from .fdpass import (EXIT_CRASH, EXIT_START_FAILED, MSG_ERROR, MSG_QUERY, MSG_STATE,
                     MSG_STOP, STOP, describe_exit)
from .handler import Handler
from .supervisor import READY_TIMEOUT, Supervisor

__all__ = ["Runtime", "launch"]

log = logging.getLogger("ringline.runtime")

_QUERY_TIMEOUT = 10.0     # a supervisor answers a state query within this
_START_SLACK = 30.0       # beyond the workers' ready timeout

_live: Set["Runtime"] = set()    # running runtimes (see the atexit hook)
_live_lock = threading.Lock()


def _pickle_exception(exc: BaseException) -> bytes:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _run_supervisor(sup: Supervisor, link: socket.socket) -> int:
    """The supervisor process: start the workers, report, supervise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the launching process decides
    asyncio.events._set_running_loop(None)
    link.setblocking(False)
    sup.link = link
    try:
        sup.start()
    except BaseException as exc:
        try:
            link.send(MSG_ERROR + _pickle_exception(exc))
        except OSError:
            pass
        return EXIT_START_FAILED
    sup.send_state()               # ready
    sup.run()
    if sup.link is not None:       # every worker exited: the last word
        sup.send_state()
        sup.link.close()
        sup.link = None
    return 0


class Runtime:
    """A runtime started by `launch()`: its supervisor runs in a child
    process of the caller; this object reads its state and stops it."""

    def __init__(self, pid: int, link: socket.socket, state: Dict[str, Any]) -> None:
        self._pid = pid
        self._link: Optional[socket.socket] = link
        self._state = state
        self._lock = threading.Lock()
        self._exited = False
        self._pidfd: Optional[int] = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    # -- state ----------------------------------------------------------

    def _query(self) -> Dict[str, Any]:
        with self._lock:
            link = self._link
            if link is None:
                return self._state
            try:
                link.send(MSG_QUERY)
            except OSError:
                pass
            self._read_states(link, _QUERY_TIMEOUT, until_eof=False)
            return self._state

    def _read_states(self, link: socket.socket, timeout: float, until_eof: bool) -> None:
        """Read state messages (newest wins): one, or all until EOF."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([link], [], [], left)
            if not ready:
                return
            try:
                msg = link.recv(1 << 20)
            except OSError:
                msg = b""
            if not msg:
                return
            if msg[:1] == MSG_STATE:
                self._state = pickle.loads(msg[1:])
                if not until_eof:
                    return

    @property
    def supervisor_pid(self) -> int:
        """The pid of the supervisor process (the workers' parent)."""
        return self._pid

    @property
    def workers(self) -> List[Optional[int]]:
        """Worker pids by worker id (None while a worker is being respawned)."""
        return list(self._query()["workers"])

    @property
    def address(self) -> Any:
        """The bound address: (host, port) for TCP, the path for Unix, None
        for client-only programs."""
        return self._state["address"]

    @property
    def port(self) -> Optional[int]:
        addr = self._state["address"]
        return addr[1] if isinstance(addr, tuple) else None

    @property
    def udp_addresses(self) -> List[Any]:
        """The bound address of each Config.udp_bind entry."""
        return list(self._state["udp_addresses"])

    @property
    def config(self) -> Config:
        """The Config the runtime runs with (fd bounds derived, see Config)."""
        cfg: Config = self._state["config"]
        return cfg

    @property
    def exit_codes(self) -> List[Optional[int]]:
        """The last exit code of each worker id (negative: killed by that
        signal; None: still running)."""
        return list(self._query()["exit_codes"])

    def stats(self) -> Dict[str, int]:
        """The supervisor's counters: accepted and refused_queue_full
        (acceptor mode), deaths and respawns."""
        return dict(self._query()["counters"])

    # -- control ----------------------------------------------------------

    def shutdown(self, grace: Optional[float] = None) -> None:
        """Start a graceful shutdown (Config.grace when grace is None); returns
        at once, join() waits for it. A later call can only shorten the grace."""
        value = -1.0 if grace is None else float(grace)
        with self._lock:
            if self._link is not None:
                try:
                    self._link.send(MSG_STOP + STOP.pack(value))
                except OSError:
                    pass

    def _supervisor_exited(self, timeout: Optional[float]) -> bool:
        """Wait (without the lock, without reaping) until the supervisor has
        exited; True when it has."""
        if self._exited:
            return True
        pidfd = self._pidfd
        if pidfd is not None:
            try:
                ready, _, _ = select.select([pidfd], [], [], timeout)
                return bool(ready)
            except (OSError, ValueError):   # closed by a concurrent join()
                return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                info = os.waitid(os.P_PID, self._pid,
                                 os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            if info is not None:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait until every worker and the supervisor have exited; True when
        they have."""
        if not self._supervisor_exited(timeout):
            return False
        with self._lock:
            if not self._exited:
                try:
                    os.waitpid(self._pid, 0)
                except ChildProcessError:
                    pass         # reaped by someone else (a SIGCHLD handler)
                self._exited = True
            if self._link is not None:
                self._read_states(self._link, 1.0, until_eof=True)
                self._link.close()
                self._link = None
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        with _live_lock:
            _live.discard(self)
        return True

    @property
    def running(self) -> bool:
        return not self._supervisor_exited(0)

    def _forget_in_child(self) -> None:
        # a process forked by launch() must not keep the caller's links to
        # other runtimes open (their supervisors would never see EOF)
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited = True

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.join()

    def __repr__(self) -> str:
        return (f"<ringline.Runtime address={self.address!r} supervisor={self._pid} "
                f"running={self.running}>")


def _start(sup: Supervisor) -> Runtime:
    sup.prepare()                   # RLIMIT_NOFILE: raised here, inherited below
    caller_end, sup_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except BaseException:
        caller_end.close()
        sup_end.close()
        raise
    if pid == 0:                    # the supervisor process
        code = EXIT_CRASH
        try:
            caller_end.close()
            # the caller's other runtimes are not ours (no lock: another
            # thread of the caller may have held it at the fork)
            for rt in list(_live):
                rt._forget_in_child()
            code = _run_supervisor(sup, sup_end)
        except BaseException:
            try:
                log.exception("ringline supervisor crashed")
            except BaseException:
                pass
        finally:
            os._exit(code)
    sup_end.close()
    sup.release_in_launcher()
    timeout = READY_TIMEOUT + _START_SLACK
    ready, _, _ = select.select([caller_end], [], [], timeout)
    msg = b""
    if ready:
        try:
            msg = caller_end.recv(1 << 20)
        except OSError:
            msg = b""
    if msg[:1] == MSG_STATE:
        rt = Runtime(pid, caller_end, pickle.loads(msg[1:]))
        with _live_lock:
            _live.add(rt)
        log.info("ringline runtime launched: supervisor pid %d", pid)
        return rt
    # the start failed: reap the supervisor (it has reaped its workers)
    if not msg and not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    caller_end.close()
    if msg[:1] == MSG_ERROR:
        raise pickle.loads(msg[1:])
    code = os.waitstatus_to_exitcode(status)
    raise RuntimeError(f"the ringline supervisor {describe_exit(code)} "
                       f"while starting" if ready else
                       f"ringline workers not ready after {timeout:.0f} s")


def launch(handler_cls: Type[Handler], bind: Bind,
           config: Optional[Config] = None) -> Runtime:
    """Start the runtime in the background (fork the supervisor, which forks
    the workers; wait until each is ready) and return at once; the caller's
    signals are left alone. Raises when a worker cannot start or
    RLIMIT_NOFILE cannot fit the Config."""
    return _start(Supervisor(handler_cls, bind, config, signals=False))


@atexit.register
def _shutdown_at_exit() -> None:
    # a launched runtime still running when the interpreter exits is shut
    # down gracefully rather than left to notice that its caller is gone
    with _live_lock:
        running = list(_live)
    for rt in running:
        rt.shutdown()
    for rt in running:
        rt.join(rt.config.grace + 6.0)
