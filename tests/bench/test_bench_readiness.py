"""The benchmark's measurements on a loaded machine: a server that is slow
to give its first answer, and a measured window in which nothing ran.

* The harness waits for a new server's first verified answer before the
  timed warm-up (runner ``_Run._first_answer``): a server that answers its
  first request only after longer than the whole warm-up is not failed, and
  one that answers wrongly or never still is.
* A client-workload window (``clients_worker._Window``) that saw no
  completion by its deadline closes at the first completion; a session
  whose tasks all failed before anything completed still ends, as an error.

The slow server is a thread on 127.0.0.1 that holds its first answer back
(an event releases it, never a sleep of a guessed length).
"""
import asyncio
import threading

import pytest

from ringline.bench import runner
from ringline.bench.clients_worker import _get_loop, _Window
from ringline.bench.loadgen import LoadgenError

from support.answering import AnsweringServer


class _HeldEcho(AnsweringServer):
    """Echo whose first answer waits for `release` (set by a timer thread
    after `hold` seconds, or at close)."""

    def __init__(self, hold, wrong=False):
        self.release = threading.Event()
        self.timer = threading.Timer(hold, self.release.set)
        self.timer.start()
        super().__init__(self._answer_of(wrong))

    def _answer_of(self, wrong):
        def answer(data):
            self.release.wait(30)
            return data[::-1] + b"!" if wrong else data
        return answer

    def close(self):
        self.timer.cancel()
        self.release.set()
        super().close()


class _Port:
    """What the runner's sessions read of a server: its port, CPU and RSS."""

    def __init__(self, port):
        self.port = port

    def cpu_times(self):
        return 0.0, 0.0

    def rss_kib(self):
        return None


def _run():
    cfg = runner.BenchConfig(loops=["asyncio"], workloads=["protocol"], conns=[1],
                             sizes=[64], rounds=1, duration=0.1, warmup=0.1,
                             lead_in=0.0, micro=False, progress=False)
    return runner._Run(cfg, None)


def test_a_server_slow_to_answer_first_is_waited_for():
    srv = _HeldEcho(hold=0.5)       # longer than the whole 0.1 s warm-up
    try:
        first = _run()._first_answer(_Port(srv.port), "echo", 64)
        # it returned with the answer, so only after the server let it go
        assert srv.release.is_set() and first > 0
    finally:
        srv.close()


def test_a_server_answering_wrongly_fails_the_readiness_check():
    srv = _HeldEcho(hold=0.0, wrong=True)
    try:
        with pytest.raises(LoadgenError, match="wrong answers in the verified warm-up.*mismatch"):
            _run()._first_answer(_Port(srv.port), "echo", 64)
    finally:
        srv.close()


def test_a_window_with_no_completion_by_its_end_closes_at_the_first_one():
    async def main():
        gate = asyncio.Event()
        calls = []

        async def get(key):
            calls.append(key)
            await gate.wait()
            return b"v"

        w, lat = _Window(), []
        task = asyncio.get_running_loop().create_task(_get_loop(get, b"k", b"v", None, w, lat))
        w.begin()
        await asyncio.sleep(0)
        w.end()                       # the deadline: nothing completed yet
        assert not w.stop and w.late and w.ru1 is None
        gate.set()                    # the first completion closes it
        await asyncio.wait_for(task, 5)
        assert w.stop and not w.late and w.ru1 is not None
        assert len(lat) == 1 and w.errors == 0
    asyncio.run(main())


def test_a_window_whose_tasks_all_failed_still_ends_as_an_error():
    async def main():
        async def get(key):
            raise ConnectionResetError("gone")

        w, lat = _Window(), []
        w.begin()
        await _get_loop(get, b"k", b"v", None, w, lat)
        w.end()
        assert w.late                 # nothing completed: still open
        w.close()                     # what session() does once the tasks ended
        assert w.stop and w.ru1 is not None and w.errors == 1 and not lat
    asyncio.run(main())


def test_a_window_in_which_nothing_ran_is_stalled_not_a_wrong_answer():
    srv = _HeldEcho(hold=60)        # released at close, after the session
    try:
        rec = _run()._session(_Port(srv.port), "echo", 1, 64, 0.1, 0.0, 0, verify=True)
        assert rec["status"] == "stalled" and rec["errors"] == 0, rec
        assert "no request completed" in rec["error"]
    finally:
        srv.close()
