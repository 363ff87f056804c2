"""The field run's guard against a disturbed round (no I/O: fake servers).

All servers of a cell are pinned to one CPU.  A loop whose server keeps that
CPU busy while another loop is measured (uringcore spun at ~97 % after its
uvicorn round in one field run, halving ringline's next round) must not
leave a number: the round is ``disturbed`` and not counted, and the spinning
server is stopped, its cell an error, and the round measured again.
"""
from __future__ import annotations

import io

from ringline.bench import runner
from ringline.bench.progress import Progress


class FakeServer:
    def __init__(self, name: str, port: int):
        self.name, self.port, self.cpu, self.closed = name, port, 0.0, False

    def cpu_times(self):
        if self.closed:
            raise OSError("gone")
        return (self.cpu, 0.0)

    def rss_kib(self):
        return 1000

    def close(self):
        self.closed = True


def _run(monkeypatch, spin_per_session: dict[str, float]):
    cfg = runner.BenchConfig(loops=["a", "b"], workloads=["protocol"], conns=[1], sizes=[1])
    run = runner._Run.__new__(runner._Run)
    run.cfg, run.spin = cfg, False
    run.progress = Progress(1.0, stream=io.StringIO())
    servers = {"a": FakeServer("a", 1), "b": FakeServer("b", 2)}
    measured = servers["a"]

    def fake_loadgen(spec):
        measured.cpu += 0.9  # the measured server works 0.9 s of the 1 s
        for name, extra in spin_per_session.items():
            if not servers[name].closed:
                servers[name].cpu += extra
        return {"errors": 0, "requests": 1000, "requests_total": 1000, "rps": 1000.0,
                "lat_us": {}, "wall_s": 1.0, "client_cpu_s": 0.1}

    monkeypatch.setattr(runner, "run_loadgen", fake_loadgen)
    return run, servers


def test_quiet_neighbours_leave_the_round_counted(monkeypatch):
    run, servers = _run(monkeypatch, {"b": 0.01})
    rec = run._session(servers["a"], "echo", 1, 1, 1.0, 0.0, 0,
                       neighbours=runner._others(servers, "a"))
    assert rec["status"] == "ok" and "busy_neighbours" not in rec
    assert rec["cpu_s_per_mreq"] == 900.0


def test_a_busy_neighbour_makes_the_round_disturbed_and_uncounted(monkeypatch):
    run, servers = _run(monkeypatch, {"b": 0.10})
    rec = run._session(servers["a"], "echo", 1, 1, 1.0, 0.0, 0,
                       neighbours=runner._others(servers, "a"))
    assert rec["status"] == "disturbed"
    assert rec["busy_neighbours"] == {"b": 0.1}
    assert "b 10%" in rec["error"]
    good = dict(rec, status="ok", rps=2000.0, lat_us={"p50": 1, "p99": 1, "p999": 1})
    summary = runner.summarize_rounds([rec, good])
    assert summary["rounds_ok"] == 1 and summary["rps"]["median"] == 2000.0
    # a disturbed round does not stop anyone below the spinner limit
    entries = {"a": {}, "b": {}}
    assert not run._stop_spinners(rec, entries, servers, "cell")
    assert not servers["b"].closed


def test_a_spinning_idle_server_is_stopped_and_its_cell_is_an_error(monkeypatch):
    run, servers = _run(monkeypatch, {"b": 0.97})
    rec = run._session(servers["a"], "echo", 1, 1, 1.0, 0.0, 0,
                       neighbours=runner._others(servers, "a"))
    assert rec["status"] == "disturbed"
    live = dict(servers)
    entries = {"a": {"status": "ok"}, "b": {"status": "ok"}}
    assert run._stop_spinners(rec, entries, live, "cell")
    assert servers["b"].closed and "b" not in live
    assert entries["b"]["status"] == "error" and "97%" in entries["b"]["error"]
    # the round measured again with the spinner gone is counted
    again = run._session(servers["a"], "echo", 1, 1, 1.0, 0.0, 0,
                         neighbours=runner._others(live, "a"))
    assert again["status"] == "ok"
