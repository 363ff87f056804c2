"""ringline.kv replication against hostile peers: malformed REPLICATE and
bogus offsets get errors or a snapshot (never a crash), a replica that acks
the future or sends anything but REPLCONF ACK is disconnected, a replica
that never reads is shed at `--repl-max-pending` while another one keeps
converging, and a primary that sends garbage (a bad handshake line, a
corrupt or oversized frame, a frame that is not a write) makes the replica
drop the link with a clear error and reconnect, never crash. Both backends;
bounded polls only."""
from __future__ import annotations

import socket
import struct
import zlib

import pytest

from ringline.redis._resp import encode_command

from support import BACKENDS
from support.kv_repl import FakePrimary, info, replica_of, synced, until
from support.kv_server import KvServer, RespConn


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request, monkeypatch):
    monkeypatch.setenv("RINGLINE_BACKEND", request.param)   # the servers inherit it
    return request.param


def _read_line(s):
    got = b""
    while not got.endswith(b"\r\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        got += chunk
    return got


def _closed(s, tries=100):
    s.settimeout(0.1)
    for _ in range(tries):
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_malformed_replicate_is_an_error_reply():
    with KvServer() as p:
        with p.conn() as c:
            for cmd in [("REPLICATE",), ("REPLICATE", "FROM", "x", "ID", "a"),
                        ("REPLICATE", "FROM", "-5", "ID", "a"),
                        ("REPLICATE", "TO", "1", "ID", "a"),
                        ("REPLICATE", "FROM", "1", "ID", "a" * 65),
                        ("REPLICATE", "FROM", "1", "ID", "a b"),
                        ("REPLICATE", "FROM", "1", "ID", "a", "extra")]:
                assert str(c.call(*cmd)).startswith("ERR"), cmd
            assert c.call("PING") == b"PONG"          # still an ordinary client
            assert c.call("REPLCONF", "listening-port", "1") == b"OK"
        assert info(p.port)["connected_slaves"] == "0"


def test_bogus_offsets_and_acks():
    with KvServer() as p:
        # the first replica starts the history (offset 0): the writes count from there
        first = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        first.sendall(encode_command(("REPLICATE", "FROM", "0", "ID", "?")))
        assert _read_line(first).endswith(b" FULL 0\r\n")
        with p.conn() as c:
            c.pipeline([("SET", f"k{i}", "v") for i in range(5)])
            replid = info(p.port)["master_replid"]
        first.close()
        # an offset the primary never reached, of its own history: a snapshot
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(encode_command(("REPLICATE", "FROM", "999999", "ID", replid)))
            assert _read_line(s) == f"+ACK 5 {replid} FULL 5\r\n".encode()
            s.sendall(encode_command(("REPLCONF", "ACK", "6")))    # acks the future
            assert _closed(s)
        # a known history at a good offset: a partial sync; then garbage
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(encode_command(("REPLICATE", "FROM", "3", "ID", replid)))
            head = _read_line(s)
            assert head == f"+ACK 3 {replid}\r\n".encode()
            s.sendall(b"GET k1\r\n")
            assert _closed(s)
        # a malformed ack line
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(encode_command(("REPLICATE", "FROM", "0", "ID", "?")))
            assert _read_line(s).startswith(b"+ACK 5 ")
            s.sendall(b"*2\r\n$-7\r\n")
            assert _closed(s)
        pi = info(p.port)
        assert pi["repl_bad_acks"] == "3" and pi["connected_slaves"] == "0"
        assert (pi["full_syncs"], pi["partial_syncs"]) == ("3", "1")
        with p.conn() as c:
            assert c.call("GET", "k4") == b"v"


def test_a_replica_that_never_reads_is_shed_others_unaffected():
    with KvServer("--repl-max-pending", "65536") as p, replica_of(p) as good:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", p.port))
        try:
            s.sendall(encode_command(("REPLICATE", "FROM", "0", "ID", "?")))
            until(lambda: info(p.port)["connected_slaves"] == "2", what="two replicas")
            value = "x" * 32768
            with p.conn() as c:
                for i in range(30):
                    c.pipeline([("SET", f"k{i}:{j}", value) for j in range(10)])
                    if info(p.port)["repl_shed_replicas"] != "0":
                        break
            pi = info(p.port)
            assert pi["repl_shed_replicas"] == "1" and pi["connected_slaves"] == "1"
            until(lambda: synced(p, good), what="the reading replica synced")
            with good.conn() as rc, p.conn() as c:
                assert rc.call("DBSIZE") == c.call("DBSIZE") > 0
        finally:
            s.close()


def _frame(payload):
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


GARBAGE = {       # what the fake primary sends, the error the replica reports
    "handshake": (b"HELLO THERE\r\n", "primary answered"),
    "long-line": (b"+" + b"A" * 2000, "too long"),
    "crc": (b"+ACK 1 abc FULL 1\r\n" + struct.pack("<II", 4, 1234) + b"abcd", "CRC"),
    "oversized": (b"+ACK 1 abc FULL 1\r\n" + struct.pack("<II", 1 << 30, 0), "bound"),
    "not-a-command": (b"+ACK 1 abc FULL 1\r\n" + _frame(b"hello"), "not one command"),
    "not-a-write": (b"+ACK 1 abc FULL 1\r\n" + _frame(encode_command(("GET", "k"))),
                    "not a write"),
    "bad-arity": (b"+ACK 1 abc FULL 1\r\n" + _frame(encode_command(("SET", "k"))),
                  "not a write"),
    "partial-elsewhere": (b"+ACK 77 abc\r\n", "another position"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_primary_sending_garbage(kind):
    script, error = GARBAGE[kind]
    with FakePrimary(script) as fake:
        with KvServer("--replicaof", "127.0.0.1", str(fake.port)) as r:
            until(lambda: int(info(r.port)["repl_connects"]) >= 2, what="reconnects")
            ri = info(r.port)
            assert ri["master_link_status"] == "down" or ri["repl_connects"] != "1"
            assert int(ri["repl_errors"]) >= 1, ri
            assert error in ri["repl_last_error"], ri["repl_last_error"]
            with r.conn() as c:
                assert c.call("PING") == b"PONG"
                assert c.call("DBSIZE") == 0
            assert fake.requests[0].startswith(b"*5\r\n$9\r\nREPLICATE\r\n")
