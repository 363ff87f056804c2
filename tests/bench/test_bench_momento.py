"""``python -m ringline.bench.momento_bench`` end to end, briefly: the fake
Momento server starts, one client process per cell runs and reports (ringline
and, where installed, the official SDK), the table renders, the fake stops.
Timing is never judged."""
import json

import pytest

pytest.importorskip("grpc")
pytest.importorskip("h2")
pytest.importorskip("momento_wire_types")

from ringline.bench import momento_bench  # noqa: E402


def test_bench_momento_smoke(tmp_path, capsys):
    try:
        import momento  # noqa: F401
        clients = ["ringline", "momento"]
    except ImportError:
        clients = ["ringline"]
    out = tmp_path / "r.json"
    assert momento_bench.main(["--duration", "0.3", "--warmup", "0.1", "--clients",
                               ",".join(clients), "--cells", "get:2,set:2",
                               "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| get | 2 | ringline |" in table and "| set | 2 | ringline |" in table
    results = json.loads(out.read_text())
    assert len(results) == 2 * len(clients)
    for r in results:
        assert "error" not in r and r["errors"] == 0 and r["ops"] > 0, r
        assert r["cpu_us"] > 0
