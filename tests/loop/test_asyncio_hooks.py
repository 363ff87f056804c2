"""The private asyncio hooks ringline's loop relies on, pinned per Python.

Owns one test per private hook: ringline.Loop subclasses
asyncio.BaseEventLoop, overrides the hooks BaseEventLoop and Server call
(_make_*_transport, _start_serving, _write_to_self, ...) and itself calls
private asyncio code (Server._attach/_detach, base_events._set_nodelay,
sslproto.SSLProtocol, BaseSubprocessTransport, _FlowControlMixin, the
sendfile fallback, _ensure_resolved, ...).  Each test checks

* the signature: every argument asyncio passes to a hook ringline overrides
  is accepted (compared with the stock selector loop's own override on the
  running Python), and every private callable ringline calls still binds the
  arguments ringline passes; and
* a behavioural scenario through the public API, on stock asyncio and on
  ringline (the backend comes from RINGLINE_BACKEND), compared.

A new CPython that renames, re-signs or re-purposes one of these shows up
here as a red test naming the hook, not as silently dropped connections.
"""
import ast
import asyncio
import inspect
import textwrap
import os
import socket
import ssl
import sys
import tempfile
import warnings

import pytest

import ringline
from ringline import _core
from ringline._loop import loop as _loop
from ringline._loop import transports as _transports

from support import run, tcp_listener

from asyncio import (base_events, base_subprocess, constants, events,
                     format_helpers, futures, selector_events, sslproto,
                     transports, unix_events)

REF_LOOP = asyncio.SelectorEventLoop      # the stock loop on this Python


def _both():
    return [("asyncio", asyncio.SelectorEventLoop),
            ("ringline", ringline.new_event_loop)]


def _on_both(scenario):
    """Run scenario(loop) on stock asyncio and on ringline; both results."""
    out = {}
    for name, factory in _both():
        loop = factory()
        try:
            out[name] = scenario(loop)
        finally:
            loop.close()
    return out["asyncio"], out["ringline"]


def _binds(func, *args, **kwargs):
    """True when func's signature accepts these arguments."""
    inspect.signature(func).bind(*args, **kwargs)
    return True


# ---------------------------------------------------------------------------
# hooks ringline overrides: asyncio calls them, so their signatures must
# accept whatever the stock loop's accept
# ---------------------------------------------------------------------------

OVERRIDDEN = [
    "_make_socket_transport", "_make_ssl_transport", "_make_datagram_transport",
    "_make_read_pipe_transport", "_make_write_pipe_transport",
    "_make_subprocess_transport", "_start_serving", "_stop_serving",
    "_sendfile_native", "_sock_sendfile_native", "_write_to_self",
    "_timer_handle_cancelled", "_check_closed", "_check_thread",
    "_call_soon", "_add_callback", "_add_callback_signalsafe",
]


def _assert_accepts(ref, ours, name):
    rp = [p for p in ref.parameters.values()]
    op = [p for p in ours.parameters.values()]
    o_names = {p.name: p for p in op}
    o_var_kw = any(p.kind is p.VAR_KEYWORD for p in op)
    o_var_pos = any(p.kind is p.VAR_POSITIONAL for p in op)
    positional = (inspect.Parameter.POSITIONAL_ONLY,
                  inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for i, p in enumerate(rp):
        if p.kind in positional:
            if i < len(op) and op[i].kind in positional:
                assert op[i].name == p.name or p.kind is p.POSITIONAL_ONLY, (
                    f"{name}: positional parameter {i} is {op[i].name!r}, "
                    f"asyncio passes {p.name!r}")
            else:
                assert o_var_pos, f"{name}: asyncio passes positional {p.name!r}"
        elif p.kind is p.KEYWORD_ONLY:
            assert p.name in o_names or o_var_kw, (
                f"{name}: asyncio may pass keyword {p.name!r}")
        elif p.kind is p.VAR_KEYWORD:
            assert o_var_kw, f"{name}: asyncio passes **kwargs through"
        elif p.kind is p.VAR_POSITIONAL:
            assert o_var_pos, f"{name}: asyncio passes *args through"
    r_names = {p.name for p in rp}
    for p in op:
        if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            assert p.name in r_names, (
                f"{name}: ringline requires {p.name!r}, which asyncio does not pass")


@pytest.mark.parametrize("name", OVERRIDDEN)
def test_overridden_hook_accepts_what_asyncio_passes(name):
    ref = getattr(REF_LOOP, name)
    ours = getattr(ringline.Loop, name)
    assert ours is not getattr(base_events.BaseEventLoop, name, None), (
        f"{name} is expected to be ringline's own")
    _assert_accepts(inspect.signature(ref), inspect.signature(ours), name)
    if inspect.iscoroutinefunction(ref):
        assert inspect.iscoroutinefunction(ours), f"{name} must be a coroutine"


# BaseEventLoop's own abstract hooks (their body raises NotImplementedError).
# ringline replaces BaseEventLoop._run_once natively, so _process_events (only
# called from there) is not needed.
NOT_NEEDED = {"_process_events"}


def _is_abstract(fn):
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0].body
    if body and isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], "value", None), ast.Constant):
        body = body[1:]            # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return False
    exc = body[0].exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def test_every_abstract_base_hook_is_provided():
    abstract = [name for name, fn in vars(base_events.BaseEventLoop).items()
                if name.startswith("_") and not name.startswith("__")
                and inspect.isfunction(fn) and _is_abstract(fn)]
    assert "_make_socket_transport" in abstract      # the scan works
    missing = [name for name in abstract if name not in NOT_NEEDED
               and getattr(ringline.Loop, name) is vars(base_events.BaseEventLoop)[name]]
    assert not missing, f"BaseEventLoop hooks ringline does not provide: {missing}"


# ---------------------------------------------------------------------------
# Server._attach/_detach (3.13: they take the transport) and the Server
# constructor / _start_serving that create_unix_server relies on
# ---------------------------------------------------------------------------

def test_server_attach_detach_arity_and_tracking():
    takes = len(inspect.signature(base_events.Server._attach).parameters) == 2
    assert takes == (sys.version_info >= (3, 13))
    assert _core._SERVER_HOOKS_TAKE_TRANSPORT == takes
    assert len(inspect.signature(base_events.Server._detach).parameters) == (
        2 if takes else 1)

    def scenario(loop):
        async def main():
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                await asyncio.sleep(0.005)
                n = (len(server._clients) if takes else server._active_count)
                if n:
                    break
            attached = n
            w.close()
            await w.wait_closed()
            server.close()
            await asyncio.wait_for(server.wait_closed(), 2)
            left = len(server._clients) if takes else server._active_count
            return attached, left
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref == (1, 0)
    assert got == ref


def test_server_constructor_and_start_serving():
    # create_unix_server builds Server(loop, sockets, protocol_factory, ssl,
    # backlog, ssl_handshake_timeout, ssl_shutdown_timeout) itself
    assert _binds(base_events.Server.__init__, None, None, [], None, None, 100,
                  None, None)
    # Server._start_serving calls loop._start_serving with these, positionally
    src = inspect.getsource(base_events.Server._start_serving)
    assert "self._loop._start_serving(" in src

    def scenario(loop):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "s.sock")

                async def echo(r, w):
                    w.write(await r.read(5))
                    await w.drain()
                    w.close()
                server = await asyncio.start_unix_server(echo, path,
                                                         start_serving=False)
                serving_before = server.is_serving()
                await server.start_serving()
                r, w = await asyncio.open_unix_connection(path)
                w.write(b"hello")
                data = await r.read()
                w.close()
                server.close()
                await server.wait_closed()
                return serving_before, data, isinstance(server, base_events.Server)
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref == (False, b"hello", True)
    assert got == ref


# ---------------------------------------------------------------------------
# helpers ringline calls
# ---------------------------------------------------------------------------

def test_set_nodelay():
    assert _binds(base_events._set_nodelay, socket.socket)

    def scenario(loop):
        async def main():
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            sock = tr.get_extra_info("socket")
            flag = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            tr.close()
            server.close()
            await server.wait_closed()
            return bool(flag)
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref is True and got is True


def test_set_result_unless_cancelled():
    assert _binds(futures._set_result_unless_cancelled, None, None)

    def scenario(loop):
        async def main():
            a, b = loop.create_future(), loop.create_future()
            b.cancel()
            futures._set_result_unless_cancelled(a, 1)
            futures._set_result_unless_cancelled(b, 2)
            return a.result(), b.cancelled()
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref == (1, True) and got == ref


def test_running_loop_hooks():
    assert _binds(events._set_running_loop, None)
    assert _binds(events._get_running_loop)

    def scenario(loop):
        async def main():
            return (events._get_running_loop() is loop,
                    asyncio.get_running_loop() is loop)
        res = run(main(), loop=loop)
        return res + (events._get_running_loop() is None,)

    ref, got = _on_both(scenario)
    assert ref == (True, True, True) and got == ref


def test_format_helpers_for_handles():
    assert isinstance(format_helpers._format_callback_source(print, ()), str)
    assert _binds(format_helpers.extract_stack, sys._getframe(), None)

    def scenario(loop):
        loop.set_debug(True)
        seen = []

        def cb():
            pass

        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
        h = loop.call_soon(cb)
        has_tb = bool(h._source_traceback)
        text = repr(h)
        h.cancel()

        def boom():
            raise KeyError("x")
        loop.call_soon(boom)
        run(asyncio.sleep(0.01), loop=loop)
        return (has_tb, "cb()" in text and "created at" in text,
                seen)

    ref, got = _on_both(scenario)
    assert ref[0] and ref[1] and ref[2][0].startswith("Exception in callback")
    assert got == ref


def test_format_callback_source_debug_flag():
    # 3.13 added debug=: full argument reprs in debug mode
    takes_debug = "debug" in inspect.signature(
        format_helpers._format_callback_source).parameters
    assert takes_debug == (sys.version_info >= (3, 13))

    def scenario(loop):
        def cb(arg):
            pass
        out = []
        for debug in (False, True):
            loop.set_debug(debug)
            h = loop.call_soon(cb, "y" * 300)
            text = repr(h)
            h.cancel()
            out.append(text[text.index("cb("):].split(" created at")[0])
        return out

    ref, got = _on_both(scenario)
    assert got == ref


def test_check_callback_and_check_running():
    assert _binds(base_events.BaseEventLoop._check_callback, None, print, "call_soon")
    assert _binds(base_events.BaseEventLoop._check_running, None)

    def scenario(loop):
        loop.set_debug(True)

        async def coro_fn():
            pass
        try:
            loop.call_soon(coro_fn)
            soon = "accepted"
        except TypeError:
            soon = "TypeError"

        async def main():
            inner = asyncio.sleep(0)
            try:
                loop.run_until_complete(inner)
            except RuntimeError as exc:
                return str(exc)
            finally:
                inner.close()
        return soon, run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref[0] == "TypeError" and "already running" in ref[1]
    assert got == ref


def test_coroutine_origin_tracking_and_asyncgen_hooks():
    assert _binds(base_events.BaseEventLoop._set_coroutine_origin_tracking, None, True)
    assert _binds(base_events.BaseEventLoop._asyncgen_firstiter_hook, None, None)
    assert _binds(base_events.BaseEventLoop._asyncgen_finalizer_hook, None, None)

    def scenario(loop):
        loop.set_debug(True)
        log = []

        async def agen():
            try:
                yield 1
                yield 2
            finally:
                log.append("agen-finalized")

        async def main():
            depth = sys.get_coroutine_origin_tracking_depth()
            g = agen()
            await g.__anext__()
            return depth > 0
        tracked = run(main(), loop=loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        return tracked, log, sys.get_coroutine_origin_tracking_depth()

    ref, got = _on_both(scenario)
    assert ref == (True, ["agen-finalized"], 0)
    assert got == ref


def test_ensure_resolved():
    sig = inspect.signature(base_events.BaseEventLoop._ensure_resolved)
    assert _binds(base_events.BaseEventLoop._ensure_resolved, None, ("h", 1),
                  family=0, type=socket.SOCK_STREAM, proto=0, loop=None)
    assert "loop" in sig.parameters

    def scenario(loop):
        async def main():
            lsock = tcp_listener()
            port = lsock.getsockname()[1]
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                # a host name (not numeric) goes through _ensure_resolved
                await loop.sock_connect(sock, ("localhost", port))
                return sock.getpeername()[0]
            finally:
                sock.close()
                lsock.close()
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref.startswith("127.") and got == ref


def test_create_connection_transport():
    assert _binds(base_events.BaseEventLoop._create_connection_transport,
                  None, None, None, None, None,
                  ssl_handshake_timeout=None, ssl_shutdown_timeout=None)

    def scenario(loop):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "c.sock")
                lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                lsock.bind(path)
                lsock.listen(1)
                tr, proto = await loop.create_unix_connection(asyncio.Protocol, path)
                ok = isinstance(tr, asyncio.Transport) and tr.get_protocol() is proto
                tr.close()
                lsock.close()
                return ok
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref is True and got is True


def test_flow_control_mixin_and_sendfile_fallback():
    # base_events' sendfile fallback insists on a _FlowControlMixin and swaps
    # in _SendfileFallbackProtocol, reading the transport's private state
    assert issubclass(_transports._SocketTransport, transports._FlowControlMixin)
    assert _binds(base_events._SendfileFallbackProtocol.__init__, None, None)
    assert _binds(base_events.BaseEventLoop._sendfile_fallback, None, None,
                  None, 0, None)
    src = inspect.getsource(base_events._SendfileFallbackProtocol)
    for attr in ("_protocol_paused", "is_reading", "pause_reading",
                 "get_protocol", "set_protocol"):
        assert attr in src, attr
    payload = os.urandom(200_000)

    def scenario(loop):
        async def main():
            got = bytearray()
            done = loop.create_future()

            class Sink(asyncio.Protocol):
                def data_received(self, data):
                    got.extend(data)
                    if len(got) >= len(payload) and not done.done():
                        done.set_result(None)

            server = await loop.create_server(Sink, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            with tempfile.TemporaryFile() as f:
                f.write(payload)
                f.flush()
                f.seek(0)
                sent = await loop._sendfile_fallback(tr, f, 0, None)
                f.seek(0)
                sent2 = await loop.sendfile(tr, f, 0, 1000)
            await asyncio.wait_for(done, 5)
            tr.close()
            server.close()
            await server.wait_closed()
            return sent, sent2, bytes(got[:len(payload)]) == payload
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref == (len(payload), 1000, True)
    assert got == ref


def test_sendfile_mode_constants():
    assert {"UNSUPPORTED", "TRY_NATIVE", "FALLBACK"} <= set(
        constants._SendfileMode.__members__)
    assert isinstance(constants.ACCEPT_RETRY_DELAY, (int, float))
    assert isinstance(constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES, int)
    # base_events.sendfile dispatches on the transport's _sendfile_compatible
    src = inspect.getsource(base_events.BaseEventLoop.sendfile)
    assert "_sendfile_compatible" in src and "_SendfileMode.TRY_NATIVE" in src
    assert _transports._SocketTransport._sendfile_compatible is constants._SendfileMode.TRY_NATIVE

    def scenario(loop):
        async def main():
            r, w = os.pipe()
            try:
                tr, _ = await loop.connect_write_pipe(asyncio.BaseProtocol,
                                                      os.fdopen(w, "wb"))
                with tempfile.TemporaryFile() as f:
                    f.write(b"x" * 10)
                    f.seek(0)
                    try:
                        await loop.sendfile(tr, f, fallback=False)
                        out = "sent"
                    except RuntimeError as exc:
                        out = type(exc).__name__
                tr.close()
                return out
            finally:
                os.close(r)
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref == "SendfileNotAvailableError" or ref == "RuntimeError"
    assert got == ref


def test_sslprotocol_and_start_tls(tmp_path):
    sig = inspect.signature(sslproto.SSLProtocol.__init__)
    for p in ("loop", "app_protocol", "sslcontext", "waiter", "server_side",
              "server_hostname", "call_connection_made",
              "ssl_handshake_timeout", "ssl_shutdown_timeout"):
        assert p in sig.parameters, p
    assert "_app_transport" in inspect.getsource(sslproto.SSLProtocol.__init__)
    assert "_start_tls_compatible" in inspect.getsource(
        base_events.BaseEventLoop.start_tls)
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)

    def scenario(loop):
        async def main():
            async def echo(r, w):
                w.write(await r.readexactly(4))
                await w.drain()
                w.close()
            server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                 server_hostname="localhost")
            w.write(b"ping")
            got1 = await r.read()
            w.close()
            # start_tls upgrades a plain connection (the STARTTLS pattern)
            upgraded = loop.create_future()

            class StartTls(asyncio.Protocol):
                def connection_made(self, tr):
                    self.tr = tr

                def data_received(self, data):
                    if data == b"START":
                        self.tr.pause_reading()     # nothing read before TLS
                        self.tr.write(b"OK")
                        asyncio.ensure_future(self.upgrade())

                async def upgrade(self):
                    tls = await loop.start_tls(self.tr, self, server_ctx,
                                               server_side=True)
                    upgraded.set_result(tls)

            server2 = await loop.create_server(StartTls, "127.0.0.1", 0)
            port2 = server2.sockets[0].getsockname()[1]
            r2, w2 = await asyncio.open_connection("127.0.0.1", port2)
            w2.write(b"START")
            assert await r2.readexactly(2) == b"OK"
            await w2.start_tls(client_ctx, server_hostname="localhost")
            tls = await upgraded
            tls.write(b"abc")
            tls.close()
            got2 = await r2.read()
            w2.close()
            for s in (server, server2):
                s.close()
                await s.wait_closed()
            return got1, got2
        return run(main(), timeout=10, loop=loop)

    if sys.version_info < (3, 11):
        pytest.fail("ringline needs 3.11+")
    ref, got = _on_both(scenario)
    assert ref == (b"ping", b"abc") and got == ref


def test_base_subprocess_transport():
    assert _binds(base_subprocess.BaseSubprocessTransport.__init__, None, None,
                  None, ["true"], False, None, None, None, 0, waiter=None,
                  extra=None, close_fds=True)
    assert _binds(base_subprocess.BaseSubprocessTransport._start, None,
                  ["true"], False, None, None, None, 0, close_fds=True)
    assert _binds(base_subprocess.BaseSubprocessTransport._process_exited, None, 0)
    assert inspect.iscoroutinefunction(base_subprocess.BaseSubprocessTransport._wait)

    def scenario(loop):
        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c",
                "import sys; d = sys.stdin.read(); print(d.upper()); sys.exit(3)",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate(b"hi")
            return out.strip(), proc.returncode
        return run(main(), timeout=20, loop=loop)

    ref, got = _on_both(scenario)
    assert ref == (b"HI", 3) and got == ref


def test_datagram_and_pipe_transports():
    def scenario(loop):
        async def main():
            got = loop.create_future()

            class P(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    if not got.done():
                        got.set_result(data)
            tr, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
            addr = tr.get_extra_info("sockname")
            tr2, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=addr)
            tr2.sendto(b"dgram")
            data = await asyncio.wait_for(got, 2)
            tr.close()
            tr2.close()
            r, w = os.pipe()
            reader = asyncio.StreamReader()
            rtr, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb"))
            wtr, _ = await loop.connect_write_pipe(asyncio.BaseProtocol,
                                                   os.fdopen(w, "wb"))
            wtr.write(b"piped")
            wtr.close()
            piped = await reader.read()
            rtr.close()
            return data, piped
        return run(main(), loop=loop)

    ref, got = _on_both(scenario)
    assert ref == (b"dgram", b"piped") and got == ref


def test_base_event_loop_state_ringline_shares():
    # BaseEventLoop.__init__ creates what ringline's close()/debug/handlers
    # read and write; Loop() must still end up with all of it
    loop = ringline.new_event_loop()
    try:
        for attr in ("_closed", "_default_executor", "_executor_shutdown_called",
                     "_debug", "_exception_handler", "_task_factory",
                     "_asyncgens", "_asyncgens_shutdown_called"):
            assert hasattr(loop, attr), attr
        assert "_executor_shutdown_called" in inspect.getsource(
            base_events.BaseEventLoop.shutdown_default_executor)
    finally:
        loop.close()


def test_policy_loop_factory_hook():
    # BaseDefaultEventLoopPolicy.new_event_loop() calls self._loop_factory()
    base = ringline.EventLoopPolicy.__mro__[1]
    assert "_loop_factory()" in inspect.getsource(base.new_event_loop)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        policy = ringline.EventLoopPolicy()
        loop = policy.new_event_loop()
    try:
        assert isinstance(loop, ringline.Loop)
    finally:
        loop.close()
    assert issubclass(ringline.EventLoopPolicy, events.AbstractEventLoopPolicy)


def test_transport_base_init():
    assert _binds(asyncio.BaseTransport.__init__, None, None)
    assert _binds(transports._FlowControlMixin.__init__, None, extra=None, loop=None)


# public methods ringline defines itself (natively or in _loop/loop.py): a keyword
# a new Python adds to the stock loop's version (3.13's cleanup_socket for
# create_unix_server, for instance) must be accepted here too
def _own_public_methods():
    names = []
    for name in dir(REF_LOOP):
        if name.startswith("_") or not callable(getattr(REF_LOOP, name)):
            continue
        ours = getattr(ringline.Loop, name, None)
        if ours is None:
            continue
        owner = next((c for c in ringline.Loop.__mro__ if name in vars(c)), None)
        if owner is not None and owner.__module__.startswith("ringline"):
            names.append(name)
    return names


@pytest.mark.parametrize("name", _own_public_methods())
def test_public_override_accepts_stock_signature(name):
    try:
        ref = inspect.signature(getattr(REF_LOOP, name))
        ours = inspect.signature(getattr(ringline.Loop, name))
    except (TypeError, ValueError):
        pytest.fail(f"{name}: no introspectable signature")
    _assert_accepts(ref, ours, name)
