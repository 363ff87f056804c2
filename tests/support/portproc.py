"""A test peer in a subprocess that prints the port it listens on (one line
on stdout) and serves until its stdin reaches end of file: the hostile fake
servers of the client tests (tests/clients/test_hostile_peers.py,
test_http_hostile.py) run this way, so that a flood they send can never
starve the loop under test of CPU in its own process.

Lifecycle: ``PortProcess(argv)`` starts it and reads the port; ``close()``
closes its stdin and waits (killing it after 10 s). ``port_processes()`` is
the fixture body: a factory whose processes all close at teardown.
"""
from ringline.bench.portchild import PortChild


class PortProcess(PortChild):
    def __init__(self, argv, cwd=None):
        super().__init__(argv, what=f"the test peer {argv[-1]!r}", cwd=cwd)


def port_processes(make_argv, cwd=None):
    """Generator for a pytest fixture: yields start(*args) -> PortProcess,
    argv from make_argv(*args); every process started is closed after."""
    started = []

    def start(*args, **kwargs):
        p = PortProcess(make_argv(*args, **kwargs), cwd=cwd)
        started.append(p)
        return p
    yield start
    for p in started:
        p.close()
