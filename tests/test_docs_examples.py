"""Every ```python block in docs/api.md runs (in a fresh interpreter, so
that policies and globals cannot leak between examples)."""
import os
import re
import subprocess
import sys

import pytest

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "api.md")


def _blocks():
    text = open(DOC).read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("code", _blocks(), ids=lambda c: c.splitlines()[0][:40])
def test_api_doc_example_runs(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_doc_has_examples():
    assert len(_blocks()) >= 8
