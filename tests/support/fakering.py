"""The fake ring (no kernel) for the file-operation tests: a loop whose
io_uring paths run over ``rl_ring_init_fake`` (see tests/loop/test_fake_completions.py
for the harness itself), how to turn it, and the file SQEs it logged.

Owns: the ``floop`` fixture (a fake-ring loop, closed after the test),
``turn`` (let it go round: what an iteration queued is submitted at the next
one's start), ``file_sqes`` (the WRITE and FSYNC SQEs submitted since the
last call) and the opcode numbers those tests read. Nothing here outlives the
test that used it.
"""
import pytest

from ringline._loop import loop as _loop

IORING_OP_FSYNC = 3
IORING_OP_WRITE = 23
IORING_FSYNC_DATASYNC = 1
IOSQE_IO_LINK = 1 << 2


@pytest.fixture
def floop():
    lp = _loop.Loop(backend="_fake", ring_entries=64)
    yield lp
    lp.close()


def turn(loop, times=1):
    for _ in range(2 * times):
        loop.call_soon(loop.stop)
        loop.run_forever()


def file_sqes(loop):
    return [s for s in loop._fake_sqes() if s["opcode"] in (IORING_OP_WRITE, IORING_OP_FSYNC)]
