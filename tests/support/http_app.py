"""The ASGI app hypercorn serves in the HTTP client tests (run as
``hypercorn support.http_app:app``). Routes:

* ``/echo``: JSON of method, path, query, headers, body length and sha256,
  the server's view of the connection (client port) and the HTTP version.
* ``/bytes/N``: N bytes (b"0123456789" repeated), Content-Length set.
* ``/stream/N``: N bytes sent in 16 KiB pieces with no length (chunked on
  HTTP/1.1, DATA frames on h2).
* ``/trailers``: a body then trailers (HTTP/2 only: hypercorn sends them there).
* ``/redirect/N``: N more 302 hops to /echo. ``/status/N``: that status.
* ``/slow``: answers after 3 s (read-timeout tests).
* ``/cookies?set=...&location=...``: a ``Set-Cookie`` field per ``set``
  parameter, then /echo's body, or a 302 to ``location`` when given.
"""
import asyncio
import hashlib
import json
from urllib.parse import parse_qsl


def pattern(n):
    """The body of /fN and /upload checks: N bytes of 0123456789 repeated."""
    return (b"0123456789" * (n // 10 + 1))[:n]


async def _body(receive):
    h = hashlib.sha256()
    n = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunk = msg.get("body", b"")
        n += len(chunk)
        h.update(chunk)
        if not msg.get("more_body"):
            break
    return n, h.hexdigest()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    n, digest = await _body(receive)
    if path.startswith("/bytes/"):
        size = int(path[7:])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode()),
                                (b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": pattern(size)})
        return
    if path.startswith("/stream/"):
        size = int(path[8:])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        data = pattern(size)
        for i in range(0, size, 16384):
            await send({"type": "http.response.body", "body": data[i:i + 16384],
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
        return
    if path.startswith("/redirect/"):
        left = int(path[10:])
        loc = b"/echo" if left <= 1 else f"/redirect/{left - 1}".encode()
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", loc), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if path.startswith("/status/"):
        await send({"type": "http.response.start", "status": int(path[8:]),
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(3)
    extra, status = [], 200
    if path == "/cookies":
        for key, value in parse_qsl(scope["query_string"].decode("latin-1")):
            if key == "set":
                extra.append((b"set-cookie", value.encode("latin-1")))
            elif key == "location":
                extra.append((b"location", value.encode("latin-1")))
                status = 302
    body = json.dumps({
        "method": scope["method"], "path": path, "query": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "length": n, "sha256": digest, "client_port": (scope.get("client") or [0, 0])[1],
        "http_version": scope["http_version"]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())] + extra})
    await send({"type": "http.response.body", "body": body})
