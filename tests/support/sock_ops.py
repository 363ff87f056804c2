"""Peer-side helpers of the sock_* tests (tests/loop/test_sock_ops_*.py).

Owns ``recv_exactly`` (n bytes through the loop's sock_recv),
``peer_recv_exactly`` (n bytes from a blocking peer socket), ``PeerReader``
(a blocking peer read in a thread, optionally slow) and ``reset_connection``
(close so that the other end sees a TCP RST), plus ``MiB``. A PeerReader is
a daemon thread that ends at its byte count, marker or EOF; ``result()``
joins it, bounded in time.
"""
import socket
import threading
import time


MiB = 1 << 20


async def recv_exactly(loop, sock, n):
    chunks = []
    while n:
        data = await loop.sock_recv(sock, n)
        if not data:
            raise EOFError(f"EOF with {n} bytes still expected")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def peer_recv_exactly(peer, n):
    chunks = []
    while n:
        data = peer.recv(min(n, 1 << 16))
        if not data:
            raise EOFError(f"EOF with {n} bytes still expected")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


class PeerReader(threading.Thread):
    """Reads from a blocking peer socket in a thread.

    Stops after ``nbytes`` bytes, after ``marker`` was seen at the end of the
    stream, or at EOF. ``delay`` seconds are slept after every recv to make a
    slow reader.
    """

    def __init__(self, peer, nbytes=None, marker=None, delay=0.0,
                 chunk=1 << 16):
        super().__init__(daemon=True)
        self.peer, self.nbytes, self.marker = peer, nbytes, marker
        self.delay, self.chunk = delay, chunk
        self.buf = bytearray()
        self.error = None

    def run(self):
        try:
            while True:
                if self.nbytes is not None and len(self.buf) >= self.nbytes:
                    return
                if self.marker is not None and self.buf.endswith(self.marker):
                    return
                data = self.peer.recv(self.chunk)
                if not data:
                    return
                self.buf += data
                if self.delay:
                    time.sleep(self.delay)
        except Exception as exc:  # noqa: BLE001 - reported by result()
            self.error = exc

    def result(self, timeout=10):
        self.join(timeout)
        assert not self.is_alive(), "peer reader did not finish"
        if self.error is not None:
            raise self.error
        return bytes(self.buf)


def reset_connection(sock):
    """Close ``sock`` so that the other end sees a TCP RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")  # l_onoff=1, l_linger=0
    sock.close()
