"""A short smoke run (2,000 inputs each) of the atheris fuzz targets in
tests/fuzz/, when atheris is installed (it is not in the test extra: it
does not build everywhere). Longer runs: scripts/fuzz.sh."""
import importlib.util
import os
import subprocess
import sys

import pytest

FUZZ = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris)")
@pytest.mark.parametrize("target", ["fuzz_resp.py", "fuzz_memcache.py"])
def test_fuzz_target_smoke(target, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(FUZZ, target), "-runs=2000",
                           "-max_len=2048", f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 2000 runs" in proc.stderr
