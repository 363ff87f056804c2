"""ringline.bench.http3_bench runs end to end at a tiny size: the server
process, a client process per cell (ringline.http3 and aioquic's own client
on uvloop), the table and the ratios (the benchmark itself is run by hand:
``python -m ringline.bench.http3_bench``)."""
import io

import pytest

from ringline.bench import http3_bench


@pytest.mark.timeout(120)
def test_http3_bench_tiny():
    out = io.StringIO()
    res = http3_bench.run_bench(["ringline", "aioquic-uvloop"], bulk_mib=1, small=20,
                                cell_timeout=60, out=out)
    text = out.getvalue()
    for key in ("bulk/ringline", "small/ringline", "bulk/aioquic-uvloop", "small/aioquic-uvloop"):
        cell = res["cells"][key]
        assert "error" not in cell, (key, cell, text)
        assert cell["done"] >= 1 and cell["wall"] > 0 and cell["cpu"] >= 0
    assert res["cells"]["small/ringline"]["done"] == 20
    assert "x_aioquic_uvloop" in res["cells"]["bulk/ringline"]
    assert "vs aioquic-uvloop" in text
