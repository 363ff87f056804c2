"""Low-level socket operations: sock_sendfile (whole files, offset and
count, empty files, the fallback for non-regular files, parameter
errors).

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test. The ``tcp`` / ``udp``
socket-pair fixtures are in tests/loop/conftest.py, the peer-side helpers
in support/sock_ops.py.
"""
import asyncio
import io
import os
import tempfile

import pytest

from support import run
from support.sock_ops import MiB, PeerReader, peer_recv_exactly


# ---------------------------------------------------------------------------
# sock_sendfile
# ---------------------------------------------------------------------------

@pytest.fixture
def datafile():
    content = os.urandom(MiB + 123)
    with tempfile.TemporaryFile() as f:
        f.write(content)
        f.flush()
        f.seek(0)
        yield f, content


def test_sock_sendfile_whole_file(loop, tcp, datafile):
    ours, peer = tcp
    f, content = datafile
    reader = PeerReader(peer, nbytes=len(content))
    reader.start()
    sent = run(loop.sock_sendfile(ours, f), loop=loop)
    assert sent == len(content)
    assert reader.result() == content
    assert f.tell() == len(content)


def test_sock_sendfile_offset_and_count(loop, tcp, datafile):
    ours, peer = tcp
    f, content = datafile
    offset, count = 1000, 300_000
    reader = PeerReader(peer, nbytes=count)
    reader.start()
    sent = run(loop.sock_sendfile(ours, f, offset, count), loop=loop)
    assert sent == count
    assert reader.result() == content[offset:offset + count]
    # the file position is updated to offset + bytes sent
    assert f.tell() == offset + count


def test_sock_sendfile_offset_to_eof(loop, tcp, datafile):
    ours, peer = tcp
    f, content = datafile
    offset = len(content) - 5000
    reader = PeerReader(peer, nbytes=5000)
    reader.start()
    assert run(loop.sock_sendfile(ours, f, offset=offset), loop=loop) == 5000
    assert reader.result() == content[offset:]


def test_sock_sendfile_empty_file(loop, tcp):
    ours, peer = tcp
    with tempfile.TemporaryFile() as f:
        assert run(loop.sock_sendfile(ours, f), loop=loop) == 0


def test_sock_sendfile_fallback_for_non_regular_file(loop, tcp):
    ours, peer = tcp
    content = os.urandom(200_000)
    reader = PeerReader(peer, nbytes=len(content) - 10)
    reader.start()
    bio = io.BytesIO(content)
    sent = run(loop.sock_sendfile(ours, bio, 10, fallback=True), loop=loop)
    assert sent == len(content) - 10
    assert reader.result() == content[10:]
    assert bio.tell() == len(content)


def test_sock_sendfile_no_fallback_raises(loop, tcp):
    ours, peer = tcp
    with pytest.raises(asyncio.SendfileNotAvailableError):
        run(loop.sock_sendfile(ours, io.BytesIO(b"data"),
                                     fallback=False), loop=loop)
    # nothing was sent, connection still usable
    run(loop.sock_sendall(ours, b"ok"), loop=loop)
    assert peer_recv_exactly(peer, 2) == b"ok"


def test_sock_sendfile_parameter_errors(loop, tcp, udp, datafile):
    ours, _peer = tcp
    f, _content = datafile
    with tempfile.TemporaryFile(mode="w+") as text:
        with pytest.raises(ValueError):
            run(loop.sock_sendfile(ours, text), loop=loop)
    with pytest.raises(ValueError):
        run(loop.sock_sendfile(udp[0], f), loop=loop)
    with pytest.raises(ValueError):
        run(loop.sock_sendfile(ours, f, count=0), loop=loop)
    with pytest.raises(ValueError):
        run(loop.sock_sendfile(ours, f, offset=-1), loop=loop)
    with pytest.raises(TypeError):
        run(loop.sock_sendfile(ours, f, count="10"), loop=loop)
