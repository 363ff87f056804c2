"""ringline.http3: an HTTP/3 client (and a small server) on ringline.quic,
with ringline.http's API.

    async with ringline.http3.Client(base_url="https://127.0.0.1:4433") as c:
        r = await c.get("/items")
        print(r.status_code, r.http_version, r.headers["content-type"], r.content)

Layout: ``_config`` (QuicLimits: the QUIC knobs; the HTTP bounds are
ringline.http's Bounds), ``_h3conn`` (one HTTP/3 connection: the engine's
H3Connection, streams, GOAWAY, resets, the receive bound), ``_client``
(Client: per-origin connections and the dial; the rest is ringline.http's
Client), ``_server`` (a small HTTP/3 server for tests, examples and the
benchmark). Requests, Response, Headers, the exceptions and Bounds are
ringline.http's. Needs qh3 (or aioquic): ``pip install ringline[http3]``.
See docs/http3.md.
"""
from ..http import (URL, Bounds, ConnectError, ConnectTimeout, Headers, HTTPError,
                    LimitExceeded, ReadError, ReadTimeout, RemoteProtocolError, Request,
                    Response, Timeout, WriteTimeout)
from ._client import Client
from ._config import QuicLimits
from ._server import H3Server, serve

__all__ = ["Client", "QuicLimits", "serve", "H3Server", "Bounds", "Timeout", "Headers", "URL",
           "Request", "Response", "HTTPError", "ConnectError", "ConnectTimeout", "ReadError",
           "ReadTimeout", "WriteTimeout", "RemoteProtocolError", "LimitExceeded"]
