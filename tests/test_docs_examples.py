"""Every ```python block in docs/api.md and docs/native.md
runs (in a fresh interpreter, so that policies and globals cannot leak
between examples). docs/runtime.md's examples run in tests/test_runtime.py."""
import os
import re
import subprocess
import sys

import pytest

DOCS_DIR = os.path.join(os.path.dirname(__file__), "..", "docs")
DOC = os.path.join(DOCS_DIR, "api.md")
RUNNABLE = ("api.md", "native.md")   # tasks.md: run by tests/test_tasks.py


def _blocks(names=("api.md",)):
    found = []
    for name in names:
        text = open(os.path.join(DOCS_DIR, name)).read()
        found += re.findall(r"```python\n(.*?)```", text, re.S)
    return found


@pytest.mark.parametrize("code", _blocks(RUNNABLE), ids=lambda c: c.splitlines()[0][:40])
def test_api_doc_example_runs(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_doc_has_examples():
    assert len(_blocks()) >= 8
