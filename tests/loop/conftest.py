"""Fixtures shared by the loop tests of this folder (on top of tests/conftest.py).

* ``tcp``: a connected loopback TCP pair ``(ours, peer)``: ``ours``
  non-blocking, for the loop under test, ``peer`` an ordinary blocking
  socket (with a timeout) driven by the test.
* ``udp``: two loopback UDP sockets bound to their own ports (not
  connected): ``ours`` non-blocking, ``peer`` blocking with a timeout.

Both are closed after the test, whatever state it left them in (the sockets
come from support.net, which owns their setup).
"""
import pytest

from support import closing_all, tcp_pair, udp_pair


@pytest.fixture
def tcp():
    ours, peer = tcp_pair()
    with closing_all(ours, peer):
        yield ours, peer


@pytest.fixture
def udp():
    ours, peer = udp_pair()
    with closing_all(ours, peer):
        yield ours, peer
