"""Loopback sockets for tests: free ports, listeners and connected pairs.

Every address is on 127.0.0.1 (tests never reach beyond loopback). The
helpers hand sockets to the caller, who closes them (``closing_all`` does it
for several at once); nothing here keeps a reference.
"""
import contextlib
import socket


def free_port(span=0, host="127.0.0.1"):
    """A TCP port on ``host`` that nothing listens on (at return time); with
    ``span`` > 0, port + span is free too (a Redis cluster node's bus port is
    its port + 10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if span == 0:
            return port
        if port + span < 65536:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s2:
                try:
                    s2.bind((host, port + span))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def tcp_listener(backlog=16):
    """A non-blocking TCP listening socket bound to 127.0.0.1 (ephemeral)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(backlog)
    lsock.setblocking(False)
    return lsock


def tcp_pair():
    """A connected pair of TCP sockets over loopback: (ours, peer).

    ``ours`` is non-blocking (for the loop); ``peer`` is blocking with a
    timeout, to be driven directly by the test or a helper thread.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        peer = socket.create_connection(lsock.getsockname(), timeout=5)
        ours, _ = lsock.accept()
    ours.setblocking(False)
    peer.settimeout(5)
    return ours, peer


def udp_pair():
    """Two UDP sockets on loopback, each connected to nothing: (ours, peer).

    ``ours`` is non-blocking; ``peer`` is blocking with a timeout.
    """
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    ours.setblocking(False)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    return ours, peer


@contextlib.contextmanager
def closing_all(*socks):
    """Close every socket given when the block ends."""
    try:
        yield socks
    finally:
        for s in socks:
            s.close()
