"""A benchmark plugin for tests/bench/test_bench_field.py: a loop that cannot be
made and a workload that answers wrongly, so the harness's footnoting of
failing loops and wrong answers can be exercised.  Loaded through
RINGLINE_BENCH_PLUGINS by the harness and by its server processes."""
import asyncio

from ringline.bench.loops import LoopSpec, register_loop
from ringline.bench.servers import Workload, register_workload


def broken_loop_factory():
    raise RuntimeError("this loop cannot be created")


register_loop(LoopSpec("broken", f"{__name__}:broken_loop_factory",
                       description="a loop that fails to start (tests)"))


class _Liar(asyncio.Protocol):
    """Echoes the right number of bytes, every one of them wrong."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(bytes(b ^ 0xFF for b in data))


async def _start_liar(sock):
    loop = asyncio.get_running_loop()
    return await loop.create_server(_Liar, sock=sock)


register_workload(Workload("liar", "echo", _start_liar,
                           "echo of the right length with wrong bytes (tests)"))
