"""ringline's connection layer: the native `Conn` API and what is built on it.

Owns (Python modules; the Cython parts of the connection slot are included
into the core extension from here too):

  api      connect / connect_unix / adopt / Listener, the per-loop knobs
           (configure) and their public read-outs (limits, stats)
  tls      TlsConn, connect_tls, wrap_client_tls, wrap_server_tls (TLS in user
           space over a Conn)
  udp      UdpSocket (datagrams with a bounded send queue)
  timers   the per-loop timer pool and sleep/timeout (TLS handshakes draw
           their deadlines from it; the runtime re-exports it)

Lifecycle: this file imports nothing, so importing one module of the layer
stays cheap; each module's objects live on one loop (see its docstring).

Invariants (layering): modules here import the loop/core and the leaves
(`ringline._errors`, `ringline._util`) only, never the runtime, the clients or
the package face (tests/test_layers.py checks it). Inside the layer: tls ->
api, tls -> timers.
"""
