"""docs/kv.md: every ```python block runs as pasted, in a fresh interpreter
(tests/test_docs_examples.py's map points here)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from support import DOCS


def _blocks():
    with open(os.path.join(DOCS, "kv.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_kv_md_has_examples():
    assert _blocks()


@pytest.mark.parametrize("code", _blocks(), ids=lambda c: c.splitlines()[0][:40])
def test_kv_md_examples_run(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
