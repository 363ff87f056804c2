"""A launched runtime leaves no warning behind: no ResourceWarning (an fd
left open after launch()/join(), e.g. the supervisor's control socket) and,
on Python 3.12+, no DeprecationWarning about fork() in a multi-threaded
process (every fork, respawns included, happens in the single-threaded
supervisor process).

The key scenario of tests/runtime/test_runtime.py (launch, echo over every worker,
a worker killed and respawned, shutdown and join, a start that fails, a
client-only program) runs in a fresh interpreter twice:
* with `-W error::ResourceWarning -W error::DeprecationWarning` (the
  acceptance command's flags; it must exit 0 with nothing on stderr), and
* with both categories at `always`: CPython reports a fork() warning it
  cannot raise (the fork already happened) nowhere under `error`, so this
  run is the one that can see it; stderr must not name either warning.
The subprocess runs on the backend RINGLINE_BACKEND selects.
"""
import subprocess
import sys
import textwrap

import pytest

SCENARIO = textwrap.dedent('''
    import gc, os, signal, socket, threading, time
    from ringline import Config, Handler, launch

    class Echo(Handler):
        async def on_accept(self, conn):
            tag = b"%d:" % self.worker.worker_id
            def on_data(view):
                conn.send_nowait(tag + bytes(view))
                return len(view)
            await conn.on_data(on_data)

    def ask(port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"x")
            return s.recv(64)

    rt = launch(Echo, ("127.0.0.1", 0), Config(workers=2, grace=1.0))
    seen = {ask(rt.port) for _ in range(20)}
    assert all(a.endswith(b":x") for a in seen), seen
    first = rt.workers[0]
    os.kill(first, signal.SIGKILL)                 # respawned by the supervisor
    deadline = time.monotonic() + 20
    while rt.workers[0] in (first, None):
        assert time.monotonic() < deadline, "worker 0 was not respawned"
        time.sleep(0.05)
    assert rt.stats()["respawns"] == 1
    assert ask(rt.port).endswith(b":x")
    rt.shutdown(0)
    assert rt.join(20)
    assert rt.exit_codes == [0, 0], rt.exit_codes

    class Broken(Handler):
        @classmethod
        def create_for_worker(cls, worker_id):
            raise LookupError("no settings")
    try:
        launch(Broken, ("127.0.0.1", 0), Config(workers=1, max_connections=16))
    except RuntimeError as exc:
        assert "no settings" in str(exc)
    else:
        raise AssertionError("launch() did not fail")

    class Client(Handler):
        async def on_start(self):
            pass
    rt = launch(Client, None, Config(workers=2, max_connections=16))
    assert rt.join(20) and rt.exit_codes == [0, 0], rt.exit_codes
    # a thread started after launch() returned: the respawn below forks in
    # the supervisor process, which has one thread whatever the caller runs
    rt = launch(Echo, ("127.0.0.1", 0), Config(workers=1, grace=1.0))
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    helper.start()
    first = rt.workers[0]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while rt.workers[0] in (first, None):
        assert time.monotonic() < deadline, "worker 0 was not respawned"
        time.sleep(0.05)
    assert ask(rt.port) == b"0:x"
    rt.shutdown(0)
    assert rt.join(20)
    stop.set()
    helper.join()
    del rt
    gc.collect()
    print("OK", flush=True)
''')


@pytest.mark.parametrize("action", ["error", "always"])
def test_launch_scenario_leaves_no_warning(tmp_path, action):
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    argv = [sys.executable, "-W", f"{action}::ResourceWarning",
            "-W", f"{action}::DeprecationWarning", str(script)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr[-3000:]
    noise = [line for line in proc.stderr.splitlines()
             if "ResourceWarning" in line or "DeprecationWarning" in line
             or "Exception ignored" in line]
    assert not noise, proc.stderr[-3000:]
