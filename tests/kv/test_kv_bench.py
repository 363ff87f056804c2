"""python -m ringline.kv.bench runs end to end (tiny N): every server
starts, redis-benchmark's rows are read, CPU per request is measured."""
from __future__ import annotations

import shutil

import pytest

from ringline.kv import bench

pytestmark = pytest.mark.skipif(shutil.which("redis-benchmark") is None
                                or shutil.which("redis-server") is None,
                                reason="redis-server / redis-benchmark not installed")


def test_bench_runs_every_server_and_depth():
    res = bench.run(n=2000, clients=4, pipelines=(1, 4), keyspace=100, repeat=2)
    assert [(label, p) for label, p, _ in res] == [
        ("redis-server", 1), ("redis-server", 4), ("redis-server always", 1),
        ("redis-server always", 4), ("ringline.kv none", 1),
        ("ringline.kv none", 4), ("ringline.kv disk", 1), ("ringline.kv disk", 4)]
    for _, _, r in res:
        assert r["set"] > 0 and r["get"] > 0
        assert r["set_cpu_us"] >= 0 and r["get_cpu_us"] >= 0
    # a tiny run may stay under one clock tick per row, not all of them
    assert sum(r["set_cpu_us"] + r["get_cpu_us"] for _, _, r in res) > 0
    text = bench.report(res)
    assert "ringline.kv disk" in text and "1.00" in text
    assert "ringline.kv disk / ringline.kv none SET at -P 4" in text


def test_cpu_seconds_counts_children():
    import os
    assert bench.cpu_seconds(os.getpid()) > 0


def test_report_survives_a_cpu_reading_of_zero():
    row = {"set": 10.0, "get": 10.0, "set_cpu_us": 0.0, "get_cpu_us": 0.0}
    text = bench.report([("redis-server", 1, row), ("ringline.kv none", 1, row),
                         ("ringline.kv disk", 1, row)])
    assert "1.00x throughput, n/a server CPU" in text

