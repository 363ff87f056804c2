"""`ringline bench grpc` (bench/grpc_bench.py) end to end, tiny: the grpcio
server starts, one client process per cell runs a few calls and reports,
the table renders, the server stops; a failing client is a footnote, not a
crash. Timing is never judged."""
import json

import pytest

pytest.importorskip("grpc")
pytest.importorskip("h2")

from ringline.bench import grpc_bench  # noqa: E402


def test_bench_grpc_smoke(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert grpc_bench.main(["--rounds", "1", "--duration", "0.2", "--warmup", "0.1",
                            "--concurrency", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| concurrent calls | client | calls/s | client CPU us/call |")
    assert "| 2 | ringline |" in table
    results = json.loads(out.read_text())
    assert {r["client"] for r in results} == set(grpc_bench.CLIENTS)
    for r in results:
        if r["client"] == "ringline" or "error" not in r:
            assert "error" not in r and r["errors"] == 0 and r["calls"] > 0, r
            assert len(r["rounds"]) == 1 and r["cpu_us"] > 0 and r["cps"] > 0, r


def test_render_footnotes_a_failed_client():
    results = [{"client": "ringline", "tasks": 100, "cps": 2000.0, "cpu_us": 100.0, "errors": 0},
               {"client": "grpcio", "tasks": 100, "cps": 1000.0, "cpu_us": 200.0, "errors": 0},
               {"client": "grpclib", "tasks": 100, "error": "grpclib is not installed"}]
    table = grpc_bench.render(results)
    assert "| 100 | ringline | 2,000 | 100 | 2.00x | 2.00x | - | - | 0 |" in table
    assert "| 100 | grpclib | - | - | - | - | - | - | error [1] |" in table
    assert "[1] grpclib at 100: grpclib is not installed" in table
