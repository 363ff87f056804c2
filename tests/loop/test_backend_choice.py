"""Backend choice at run time (the poll backend issue): io_uring when the
kernel grants it, otherwise the poll backend (epoll) automatically with one
INFO line on the "ringline" logger naming the reason; RINGLINE_BACKEND and
backend= force a choice, and forcing io_uring where it is unavailable raises
an error naming the reason; ringline.backend() reports name and reason.

io_uring is made to look unavailable with the test hooks read at loop
creation: RINGLINE_FAKE_URING_ERRNO (io_uring_setup fails with that errno)
and RINGLINE_FAKE_URING_DISABLED (as if /proc/sys/kernel/io_uring_disabled
held that value for this unprivileged process)."""
import asyncio
import errno
import logging
import os
import subprocess
import sys

import pytest

import ringline
from ringline._loop import backend as _backend

ENV_KEYS = ("RINGLINE_BACKEND", "RINGLINE_FAKE_URING_ERRNO", "RINGLINE_FAKE_URING_DISABLED")


@pytest.fixture
def clean_env(monkeypatch):
    """No backend forcing or fake hooks from the outer test pass, and the
    once-per-process announcement forgotten."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(_backend, "_announced", set())
    monkeypatch.setattr(_backend, "_cache", {})
    return monkeypatch


def _fallback_records(caplog):
    return [r for r in caplog.records
            if r.name == "ringline" and r.levelno == logging.INFO
            and "poll backend" in r.getMessage()]


async def _echo_round_trip(loop, payload=b"hello ringline" * 100):
    async def handle(reader, writer):
        data = await reader.readexactly(len(payload))
        writer.write(data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    echoed = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return echoed


def _run_echo(loop):
    try:
        payload = b"x" * 100_000
        assert loop.run_until_complete(
            asyncio.wait_for(_echo_round_trip(loop, payload), 10)) == payload
    finally:
        loop.close()


# ---- automatic fallback -----------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("ENOSYS", ["ENOSYS", "no io_uring"]),
    ("EPERM", ["EPERM", "not permitted"]),
])
def test_setup_errno_falls_back_to_poll_with_one_info_line(clean_env, caplog, name, words):
    clean_env.setenv("RINGLINE_FAKE_URING_ERRNO", name)
    caplog.set_level(logging.INFO, logger="ringline")
    loop = ringline.new_event_loop()
    info = ringline.backend(loop)
    assert info.name == "poll"
    for w in words:
        assert w in info.reason, info.reason
    assert loop._ring_stats()["backend"] == "poll"
    records = _fallback_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert name in records[0].getMessage()
    # a second loop: same reason, not announced again
    loop2 = ringline.new_event_loop()
    loop2.close()
    assert len(_fallback_records(caplog)) == 1
    _run_echo(loop)


@pytest.mark.parametrize("value", ["2", "1"])
def test_io_uring_disabled_falls_back_to_poll(clean_env, caplog, value):
    clean_env.setenv("RINGLINE_FAKE_URING_DISABLED", value)
    caplog.set_level(logging.INFO, logger="ringline")
    loop = ringline.Loop()
    try:
        info = ringline.backend(loop)
        assert info.name == "poll"
        assert f"io_uring_disabled={value}" in info.reason
        assert "/proc/sys/kernel/io_uring_disabled" in info.reason
        assert "EPERM" in info.reason
    finally:
        loop.close()
    records = _fallback_records(caplog)
    assert len(records) == 1
    assert f"io_uring_disabled={value}" in records[0].getMessage()


def test_fallback_logs_exactly_one_line_in_a_fresh_process():
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr,\n"
        "                    format='%(name)s %(levelname)s %(message)s')\n"
        "import ringline\n"
        "for _ in range(3):\n"
        "    loop = ringline.new_event_loop()\n"
        "    print(ringline.backend(loop).name)\n"
        "    loop.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["RINGLINE_FAKE_URING_ERRNO"] = "ENOSYS"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["poll"] * 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ringline ")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ringline INFO ") and "ENOSYS" in lines[0]


def test_no_fallback_line_when_io_uring_works(clean_env, caplog):
    caplog.set_level(logging.INFO, logger="ringline")
    loop = ringline.new_event_loop()
    try:
        info = ringline.backend(loop)
    finally:
        loop.close()
    if info.name == "io_uring":
        assert info.reason == "io_uring_setup succeeded"
        assert not _fallback_records(caplog)
    else:   # a machine without io_uring: the fallback said why
        assert len(_fallback_records(caplog)) == 1


# ---- forcing a backend --------------------------------------------------------

@pytest.mark.parametrize("how", ["env", "argument"])
def test_forcing_io_uring_where_unavailable_raises_naming_the_reason(clean_env, how):
    clean_env.setenv("RINGLINE_FAKE_URING_ERRNO", "ENOSYS")
    if how == "env":
        clean_env.setenv("RINGLINE_BACKEND", "io_uring")
        make = ringline.new_event_loop
    else:
        def make():
            return ringline.new_event_loop(backend="io_uring")
    with pytest.raises(ringline.BackendUnavailable) as ei:
        make()
    assert isinstance(ei.value, OSError)
    assert ei.value.errno == errno.ENOSYS
    assert "ENOSYS" in str(ei.value)
    assert ("RINGLINE_BACKEND=io_uring" if how == "env" else "backend='io_uring'") in str(ei.value)


def test_forcing_io_uring_when_disabled_names_the_sysctl(clean_env):
    clean_env.setenv("RINGLINE_FAKE_URING_DISABLED", "2")
    with pytest.raises(ringline.BackendUnavailable, match="io_uring_disabled=2"):
        ringline.Loop(backend="io_uring")


def test_forcing_poll_by_env_and_argument(clean_env):
    clean_env.setenv("RINGLINE_BACKEND", "poll")
    loop = ringline.new_event_loop()
    assert ringline.backend(loop).name == "poll"
    assert ringline.backend(loop).reason == "forced by RINGLINE_BACKEND=poll"
    loop.close()
    # the argument wins over the environment
    clean_env.setenv("RINGLINE_BACKEND", "io_uring")
    loop = ringline.Loop(backend="poll")
    assert ringline.backend(loop).reason == "forced by backend='poll'"
    assert "backend=poll" in repr(loop)
    loop.close()


def test_forced_io_uring_where_available(clean_env):
    if _backend._io_uring_disabled()[0] >= 2:
        pytest.fail("io_uring is disabled on this machine; the io_uring pass needs it")
    loop = ringline.Loop(backend="io_uring")
    try:
        info = ringline.backend(loop)
        assert info.name == "io_uring"
        assert info.reason == "io_uring_setup succeeded (forced by backend='io_uring')"
        assert loop._ring_stats()["backend"] == "io_uring"
    finally:
        loop.close()


def test_unknown_backend_name_is_rejected(clean_env):
    with pytest.raises(ValueError, match="kqueue"):
        ringline.new_event_loop(backend="kqueue")
    clean_env.setenv("RINGLINE_BACKEND", "bogus")
    with pytest.raises(ValueError, match="RINGLINE_BACKEND=bogus"):
        ringline.new_event_loop()


# ---- backend() ------------------------------------------------------------------

def test_backend_reports_name_and_reason_per_setting(clean_env):
    clean_env.setenv("RINGLINE_BACKEND", "poll")
    info = ringline.backend()
    assert (info.name, info.reason) == ("poll", "forced by RINGLINE_BACKEND=poll")
    assert info["name"] == "poll" and info.as_dict()["reason"] == info.reason
    assert "RECV" in info.opcodes and "SEND_ZC" not in info.opcodes
    clean_env.delenv("RINGLINE_BACKEND")
    clean_env.setenv("RINGLINE_FAKE_URING_ERRNO", "EPERM")
    info = ringline.backend()
    assert info.name == "poll" and "EPERM" in info.reason
    clean_env.delenv("RINGLINE_FAKE_URING_ERRNO")
    info = ringline.backend()
    if info.name == "io_uring":
        assert info.reason == "io_uring_setup succeeded"
        assert "SEND_ZC" in info.opcodes or info.opcodes


def test_failure_descriptions_name_the_reason():
    desc = _backend._describe_failure
    assert "io_uring_disabled=2" in desc(OSError(errno.EPERM, "x"), 2)
    assert "kernel.io_uring_group" in desc(OSError(errno.EPERM, "x"), 1)
    assert "ENOSYS" in desc(OSError(errno.ENOSYS, "x"), 0)
    missing = OSError(errno.EOPNOTSUPP, "io_uring lacks opcodes ringline needs: RECV, SEND")
    assert "RECV" in desc(missing, 0)
    old = OSError(errno.EINVAL, "io_uring provided buffer rings unavailable "
                                "(kernel older than 5.19): EINVAL")
    assert "5.19" in desc(old, 0)


# ---- the poll backend works --------------------------------------------------------

def test_new_event_loop_backend_poll_echo_round_trip(clean_env):
    loop = ringline.new_event_loop(backend="poll")
    assert loop._ring_stats()["backend"] == "poll"
    _run_echo_and_check_counters(loop)


def _run_echo_and_check_counters(loop):
    payload = os.urandom(200_000)
    try:
        got = loop.run_until_complete(asyncio.wait_for(_echo_round_trip(loop, payload), 10))
        assert got == payload
        stats = loop._ring_stats()
        assert stats["epoll_waits"] > 0
        # only the always-armed wakeup read is left waiting
        assert stats["waiting"] <= 2, stats
    finally:
        loop.close()


def test_asyncio_runner_with_poll_loop_factory(clean_env):
    async def main():
        loop = asyncio.get_running_loop()
        assert ringline.backend(loop).name == "poll"
        return await _echo_round_trip(loop)

    with asyncio.Runner(loop_factory=lambda: ringline.new_event_loop(backend="poll")) as r:
        assert r.run(main()) == b"hello ringline" * 100
