"""`ringline bench http` (bench/http_bench.py) end to end, briefly: nginx
starts, one client process per cell runs and reports, the table renders,
nginx stops. Timing is never judged."""
import json

import pytest

from ringline.bench import http_bench
from ringline.bench.nginx import have_nginx

pytestmark = pytest.mark.skipif(not have_nginx(), reason="nginx is not installed")


def test_bench_http_smoke(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert http_bench.main(["--duration", "0.3", "--warmup", "0.1", "--clients",
                            "ringline,aiohttp", "--cells", "h1:2:16,h2:2:65536",
                            "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| h1 | 2 | 16 | ringline |" in table
    results = json.loads(out.read_text())
    ours = [r for r in results if r["client"] == "ringline"]
    assert len(ours) == 2
    for r in ours:
        assert "error" not in r and r["errors"] == 0 and r["requests"] > 0, r
    # aiohttp has no HTTP/2: left out of the h2 cell
    assert not any(r["client"] == "aiohttp" and r["proto"] == "h2" for r in results)
