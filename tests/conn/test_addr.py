"""ringline._util.addr: the one host:port parser, and its callers' use of it."""
from __future__ import annotations

import socket

import pytest

from ringline._util.addr import (check_port, has_port, parse_address, split_host_port,
                                 strip_brackets)


@pytest.mark.parametrize("text, expected", [
    ("localhost:6379", ("localhost", 6379)),
    ("10.0.0.1:1", ("10.0.0.1", 1)),
    ("[::1]:11211", ("::1", 11211)),
    ("[fe80::1%lo]:80", ("fe80::1%lo", 80)),
    (":7000", ("127.0.0.1", 7000)),
    ("[]:7000", ("127.0.0.1", 7000)),
    ("host:65535", ("host", 65535)),
])
def test_split_host_port(text, expected):
    assert split_host_port(text) == expected


def test_default_host_is_the_callers():
    assert split_host_port(":80", default_host="") == ("", 80)
    assert split_host_port("[::]:80", default_host="") == ("::", 80)


@pytest.mark.parametrize("text", ["localhost", "host:", "host:http", "host:-1", "", "[::1]",
                                  "host:6379 ", "host:٣"])
def test_missing_or_bad_port(text):
    with pytest.raises(ValueError, match="host:port"):
        split_host_port(text)


@pytest.mark.parametrize("text, default, expected", [
    ("cache", 11211, ("cache", 11211)),
    ("[::1]", 11211, ("::1", 11211)),
    ("", 11211, ("127.0.0.1", 11211)),
    ("cache:5000", 11211, ("cache", 5000)),
])
def test_default_port(text, default, expected):
    assert split_host_port(text, default_port=default) == expected


@pytest.mark.parametrize("text", ["host:0", "host:65536", "host:99999999999999999999",
                                  "host:" + "9" * 100_000, "h" * 100_000 + ":0"])
def test_port_range(text):
    """Out of range whatever the length (a peer may supply the text: a Redis
    MOVED reply); the message stays short."""
    with pytest.raises(ValueError, match="port must be in 1..65535") as err:
        split_host_port(text)
    assert len(str(err.value)) < 200


def test_port_zero_for_binders():
    assert split_host_port("0.0.0.0:0", min_port=0, default_host="") == ("0.0.0.0", 0)
    with pytest.raises(ValueError, match="0..65535"):
        split_host_port("h:65536", min_port=0)


def test_pairs():
    assert parse_address(("::1", 80)) == ("::1", 80)
    assert parse_address(("::1", 80, 0, 0)) == ("::1", 80)       # an IPv6 sockaddr
    assert parse_address("h:81") == ("h", 81)
    for port in (0, 65536, "80", 80.0, True):
        with pytest.raises(ValueError, match="port must be an int in 1..65535"):
            parse_address(("h", port))
    for bad in (None, 80, ("h",), b"h:80"):
        with pytest.raises(TypeError):
            parse_address(bad)


def test_helpers():
    assert strip_brackets("[::1]") == "::1" and strip_brackets("::1") == "::1"
    assert strip_brackets("[x") == "[x"
    assert has_port("a:1") and has_port("[::1]:1") and not has_port("/tmp/s")
    assert not has_port("a:") and not has_port("a")
    assert check_port(0, min_port=0) == 0
    with pytest.raises(ValueError):
        check_port(0)


def test_bind_text_is_tcp_or_a_unix_path():
    from ringline._runtime.bind import parse_bind
    spec = parse_bind("127.0.0.1:0")
    assert spec is not None and spec.family == socket.AF_INET
    assert spec.sockaddr == ("127.0.0.1", 0)
    spec = parse_bind(":8080")
    assert spec is not None and spec.sockaddr == ("0.0.0.0", 8080)
    spec = parse_bind("[::1]:0")
    assert spec is not None and spec.family == socket.AF_INET6
    for path in ("/tmp/ringline.sock", "./a:80", "relative.sock"):
        spec = parse_bind(path)
        assert spec is not None and spec.family == socket.AF_UNIX and spec.path == path
    with pytest.raises(ValueError, match="bind port must be an int in 0..65535, got 70000"):
        parse_bind("127.0.0.1:70000")
    with pytest.raises(ValueError, match="bind port must be an int in 0..65535"):
        parse_bind(("127.0.0.1", 70000))


def test_config_udp_bind_text():
    from ringline._errors import ConfigError
    from ringline._runtime.config import Config
    assert Config(udp_bind=["[::1]:0", "127.0.0.1:53"]).udp_bind == (("::1", 0),
                                                                     ("127.0.0.1", 53))
    with pytest.raises(ConfigError, match="udp_bind"):
        Config(udp_bind=["127.0.0.1:70000"])
    with pytest.raises(ConfigError, match="udp_bind"):
        Config(udp_bind=["localhost"])


def test_client_callers():
    from ringline.memcache._client import _split_addr
    from ringline.redis._cluster import _seed
    from ringline.redis._errors import MovedError
    assert _split_addr("cache", None) == ("cache", 11211)
    assert _split_addr("[::1]:5000", None) == ("::1", 5000)
    assert _split_addr(("h", 1), None) == ("h", 1)
    assert _split_addr("h", 7) == ("h", 7)
    assert _seed("[::1]:7000") == ("::1", 7000) and _seed(("h", 7001)) == ("h", 7001)
    moved = MovedError("MOVED 3999 [::1]:6381")
    assert (moved.slot, moved.host, moved.port) == (3999, "::1", 6381)
    moved = MovedError("MOVED 3999 :6381")
    assert (moved.host, moved.port) == ("", 6381)
