"""docs/memcache.md: every python example in it runs against a real
memcached (and there are examples to run).

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll). The
``server`` (one real memcached per module) and ``port`` (flushed for each
test) fixtures are in tests/clients/conftest.py; the stub servers in
support/memcache_stubs.py.
"""
import os
import subprocess

import pytest

from support import DOCS
from support.memcached import have_memcached


pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


# ---------------------------------------------------------------------------
# docs/memcache.md: every example runs


def _doc_blocks():
    import re
    doc = os.path.join(DOCS, "memcache.md")
    return re.findall(r"```python\n(.*?)```", open(doc).read(), re.S)


@pytest.mark.parametrize("code", _doc_blocks(), ids=lambda c: c.strip().splitlines()[-1][:40])
def test_doc_examples_run(server, port, code):
    import sys
    env = dict(os.environ, MEMCACHE_ADDR=server.address)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr


def test_doc_has_examples():
    assert len(_doc_blocks()) >= 6
