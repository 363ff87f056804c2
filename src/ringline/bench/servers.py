"""The registry of servers under test (workloads) and the built-in servers.

Owns: :data:`WORKLOADS`, the table of benchmark servers, each written against
the public asyncio loop API only, so that every one of them runs unchanged
on any registered loop.  A workload pairs a server with the load generator
mode that drives it (``echo``, ``http`` or ``udp``).

Built-ins:

==========  ==========================================================
protocol    echo with an :class:`asyncio.Protocol` (``transport.write``)
buffered    echo with an :class:`asyncio.BufferedProtocol`
streams     echo with :func:`asyncio.start_server` (read / write / drain)
sock        echo with ``loop.sock_accept`` / ``sock_recv`` / ``sock_sendall``
http        HTTP/1.1 keep-alive server (httptools parser), fixed response
udp         UDP echo with a :class:`asyncio.DatagramProtocol`
==========  ==========================================================

Extending: a module named ``ringline.bench.servers_<anything>`` (found
automatically) or listed in the ``RINGLINE_BENCH_PLUGINS`` environment
variable (comma-separated module names) calls :func:`register_workload` (or
:func:`ringline.bench.loops.register_loop`) at import time; the harness, the server process and the tests all pick it up
through :func:`load_plugins`.  Such a module must not import a loop
implementation at import time (do it inside ``start``), so that listing
workloads never depends on a loop being importable.

Lifecycle of a server: the server process creates the listening (or bound
UDP) socket itself, then awaits ``start(sock)`` on the running loop; the
returned object is kept alive until the process stops.

Invariants: each echo server writes back exactly the bytes it received, in
order; the HTTP server answers every complete request with one response and
keeps the connection open unless the client asked to close it.
"""
from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import socket
import warnings
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

#: Loopback's largest UDP payload.
UDP_MAX_PAYLOAD = 65507

#: Read size for the echo servers that choose one (asyncio's own default).
READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Workload:
    """One server under test.

    ``start`` is a coroutine function taking the bound socket (listening for
    TCP) and returning an object to keep alive while serving.  ``mode`` is the
    load generator mode.  ``sized`` says whether the message size applies
    (HTTP uses a fixed request); ``max_size`` caps it (UDP datagrams);
    ``loops`` restricts the workload to some loops (``None``: every loop).
    """

    name: str
    mode: str
    start: Callable[[socket.socket], Awaitable[Any]]
    description: str
    sized: bool = True
    max_size: int | None = None
    loops: tuple[str, ...] | None = None

    @property
    def transport(self) -> str:
        return "udp" if self.mode == "udp" else "tcp"

    def supports_size(self, size: int | None) -> bool:
        if not self.sized:
            return True
        return self.max_size is None or (size is not None and size <= self.max_size)

    def supports_loop(self, loop_name: str) -> bool:
        return self.loops is None or loop_name in self.loops


WORKLOADS: dict[str, Workload] = {}

_MODES = ("echo", "http", "udp")


def register_workload(workload: Workload) -> Workload:
    """Add (or replace) a workload; returns it so it can decorate-by-call."""
    if workload.mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, not {workload.mode!r}")
    WORKLOADS[workload.name] = workload
    return workload


def get_workload(name: str) -> Workload:
    load_plugins()
    try:
        return WORKLOADS[name]
    except KeyError:
        known = ", ".join(WORKLOADS)
        raise ValueError(f"unknown workload {name!r} (known: {known})") from None


_plugins_loaded = False


def load_plugins() -> None:
    """Import every workload plugin once (see the module docstring)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    names = []
    package_dir = os.path.dirname(__file__)
    for info in pkgutil.iter_modules([package_dir]):
        if info.name.startswith("servers_"):
            names.append(f"{__package__}.{info.name}")
    extra = os.environ.get("RINGLINE_BENCH_PLUGINS", "")
    names.extend(n.strip() for n in extra.split(",") if n.strip())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plugin must not stop the others
            warnings.warn(f"benchmark plugin {name} failed to load: {exc!r}")


def make_socket(workload: Workload, host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """The bound, non-blocking socket a workload serves on."""
    if workload.transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # a burst of 100 clients' datagrams must not overflow the queue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        sock.bind((host, port))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(4096)
    sock.setblocking(False)
    return sock


# ---- echo: Protocol ---------------------------------------------------------


class _EchoProtocol(asyncio.Protocol):
    __slots__ = ("_transport",)

    def connection_made(self, transport):
        self._transport = transport

    def data_received(self, data):
        self._transport.write(data)

    def connection_lost(self, exc):
        self._transport = None


async def _start_protocol(sock: socket.socket):
    return await asyncio.get_running_loop().create_server(_EchoProtocol, sock=sock)


# ---- echo: BufferedProtocol -------------------------------------------------


class _BufferedEchoProtocol(asyncio.BufferedProtocol):
    __slots__ = ("_transport", "_view")

    def __init__(self):
        # Per connection: the loop owns this buffer between get_buffer() and
        # buffer_updated(), which a completion-based loop may keep in flight.
        self._view = memoryview(bytearray(READ_SIZE))

    def connection_made(self, transport):
        self._transport = transport

    def get_buffer(self, sizehint):
        return self._view

    def buffer_updated(self, nbytes):
        # Copy out: the buffer is reused for the next read while the write
        # may still be queued in the transport.
        self._transport.write(self._view[:nbytes].tobytes())

    def connection_lost(self, exc):
        self._transport = None


async def _start_buffered(sock: socket.socket):
    return await asyncio.get_running_loop().create_server(_BufferedEchoProtocol, sock=sock)


# ---- echo: streams ----------------------------------------------------------


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _start_streams(sock: socket.socket):
    return await asyncio.start_server(_stream_echo, sock=sock)


# ---- echo: sock_* -----------------------------------------------------------


class _SockEchoServer:
    """Accept loop plus one task per client, on the ``loop.sock_*`` API."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket):
        self._loop = loop
        self._sock = sock
        self._clients: set[asyncio.Task] = set()
        self._acceptor = loop.create_task(self._accept_forever())

    async def _accept_forever(self):
        loop = self._loop
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._serve(conn))
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    async def _serve(self, conn: socket.socket):
        loop = self._loop
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._acceptor.cancel()
        for task in list(self._clients):
            task.cancel()


async def _start_sock(sock: socket.socket):
    return _SockEchoServer(asyncio.get_running_loop(), sock)


# ---- HTTP/1.1 ---------------------------------------------------------------

HTTP_BODY = b"Hello, World!"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    + str(len(HTTP_BODY)).encode() + b"\r\n\r\n" + HTTP_BODY
)
_HTTP_RESPONSE_CLOSE = HTTP_RESPONSE.replace(
    b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
_HTTP_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")


class _HttpProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1: one fixed response per complete request."""

    __slots__ = ("_transport", "_parser")

    def __init__(self):
        import httptools

        self._parser = httptools.HttpRequestParser(self)
        self._transport = None

    def connection_made(self, transport):
        self._transport = transport

    def data_received(self, data):
        import httptools

        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(_HTTP_BAD_REQUEST)
                self._transport.close()
                self._transport = None

    def on_message_complete(self):
        transport = self._transport
        if transport is None:
            return
        if self._parser.should_keep_alive():
            transport.write(HTTP_RESPONSE)
        else:
            transport.write(_HTTP_RESPONSE_CLOSE)
            transport.close()
            self._transport = None

    def connection_lost(self, exc):
        self._transport = None


async def _start_http(sock: socket.socket):
    import httptools  # noqa: F401  (fail at start, not per connection)

    return await asyncio.get_running_loop().create_server(_HttpProtocol, sock=sock)


# ---- UDP --------------------------------------------------------------------


class _UdpEchoProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_transport",)

    def connection_made(self, transport):
        self._transport = transport

    def datagram_received(self, data, addr):
        self._transport.sendto(data, addr)

    def error_received(self, exc):
        pass  # ICMP errors from departed clients are not the server's problem


async def _start_udp(sock: socket.socket):
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _UdpEchoProtocol, sock=sock)
    return transport


for _workload in (
    Workload("protocol", "echo", _start_protocol, "echo, asyncio.Protocol"),
    Workload("buffered", "echo", _start_buffered, "echo, asyncio.BufferedProtocol"),
    Workload("streams", "echo", _start_streams, "echo, asyncio streams"),
    Workload("sock", "echo", _start_sock, "echo, loop.sock_* API"),
    Workload("http", "http", _start_http,
             "HTTP/1.1 keep-alive, httptools, fixed 13-byte body", sized=False),
    Workload("udp", "udp", _start_udp, "UDP echo, DatagramProtocol",
             max_size=UDP_MAX_PAYLOAD),
):
    register_workload(_workload)
