"""A fake HTTP server for the hostile-peer tests of ringline.http, run as a
subprocess (``python -m support.http_fake MODE``; it prints its port and
stops when its stdin closes), so the client process's memory measures the
client alone.

Its first connection is a well-behaved bystander (every request answered
"ok", HTTP/1.1 or h2c by prior knowledge, whichever the client speaks);
every later connection answers its first request with the hostile reply
MODE names (for the h2_goaway modes only the second: the third serves
the retries). Every endless stream is capped in bytes (``CAP``) and time, so
a client without the bound under test fails by growing or hanging, and the
test still ends.

Mode ``cookies`` is not hostile by itself: every connection answers every
request (HTTP/1.1, keep-alive) with a JSON body ``{"path": target,
"cookie": [each Cookie field received]}`` (a Content-Length body is read
and dropped; ``Connection: close`` closes after the answer) and a head the request's query
scripts, in this order: one ``Set-Cookie`` field per ``set=`` parameter (its
value as given, percent-decoded as latin-1); ``many=N``: N more fields
``m0=0`` ... (``Path=/``); ``huge=N``: one field ``huge=`` + N bytes;
``location=URL``: a 302 to URL (else 200).
"""
import asyncio
import itertools
import json
import sys
import time
import zlib
from urllib.parse import parse_qsl, urlsplit

from ringline.bench.portchild import serve_streams

CAP = 300 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h1_reply(mode):
    """(head bytes, iterator of further chunks) for an HTTP/1.1 mode."""
    ok = b"HTTP/1.1 200 OK\r\n"
    if mode == "garbage":
        return b"SSH-2.0-OpenSSH_9.2\r\n\r\n", iter(())
    if mode == "huge_headers":
        return ok, itertools.repeat(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    if mode == "huge_header_line":
        return ok + b"X-Big: ", itertools.repeat(b"a" * 65536)
    if mode == "many_headers":
        return ok + b"".join(b"X-%d: v\r\n" % i for i in range(1000)) + b"\r\n", iter(())
    if mode == "cl_lie":
        return ok + b"Content-Length: 100000\r\n\r\n" + b"x" * 1000, iter(())
    if mode == "cl_te":
        return ok + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", iter(())
    if mode == "cl_conflict":
        return ok + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", iter(())
    if mode == "chunk_overflow":
        return ok + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n", iter(())
    if mode == "endless_chunked":
        return (ok + b"Transfer-Encoding: chunked\r\n\r\n",
                itertools.repeat(b"10000\r\n" + b"z" * 65536 + b"\r\n"))
    if mode == "endless_chunk_ext":
        return ok + b"Transfer-Encoding: chunked\r\n\r\n5;ext=", itertools.repeat(b"e" * 65536)
    if mode == "endless_trailer":
        return (ok + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: ",
                itertools.repeat(b"t" * 65536))
    if mode == "gzip_bomb":
        def bomb():
            c = zlib.compressobj(9, zlib.DEFLATED, 31)
            zeros = b"\0" * (1 << 20)
            while True:
                yield c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
        return ok + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", (
            b"%x\r\n%b\r\n" % (len(p), p) for p in bomb())
    if mode == "header_nul":
        return ok + b"X-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n", iter(())
    if mode == "slow_head":
        return b"HTTP/1.1 200 OK\r\n", iter(())      # then nothing: a read timeout
    raise SystemExit("unknown mode " + mode)


def _frames():
    from hyperframe.frame import DataFrame, PingFrame, SettingsFrame
    return DataFrame, PingFrame, SettingsFrame


def h2_hostile(mode, conn, sid):
    """Bytes to send after the request on stream sid arrived (h2 modes)."""
    DataFrame, PingFrame, SettingsFrame = _frames()
    if mode == "h2_settings_flood":
        return b"", itertools.repeat(SettingsFrame(0).serialize() * 512)
    if mode == "h2_ping_flood":
        return b"", itertools.repeat(PingFrame(0, opaque_data=b"12345678").serialize() * 512)
    if mode == "h2_empty_data_flood":
        conn.send_headers(sid, [(":status", "200")])
        return conn.data_to_send(), itertools.repeat(DataFrame(sid, data=b"").serialize() * 1024)
    if mode == "h2_hpack_bomb":
        # one big header inserted into the dynamic table, then referenced by
        # index (one byte each) thousands of times
        conn.send_headers(sid, [(":status", "200"), ("x-bomb", "b" * 4000)]
                          + [("x-bomb", "b" * 4000)] * 3000)
        return conn.data_to_send(), iter(())
    if mode == "h2_rst":
        from h2.errors import ErrorCodes
        conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
        return conn.data_to_send(), iter(())
    if mode == "h2_goaway":
        from h2.errors import ErrorCodes
        # GOAWAY naming an earlier stream: the request was not processed
        conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=0)
        return conn.data_to_send(), iter(())
    raise SystemExit("unknown mode " + mode)


async def _send_all(writer, head, chunks):
    writer.write(head)
    sent, deadline = len(head), time.monotonic() + 60
    for chunk in chunks:
        if sent >= CAP or time.monotonic() > deadline:
            break
        writer.write(chunk)
        sent += len(chunk)
        await writer.drain()
    await writer.drain()


async def _goaway_midflight(reader, writer, conn):
    """Wait for three requests, answer the first, then GOAWAY naming it as
    the last stream processed: the other two must be retried elsewhere."""
    import h2.events
    from h2.errors import ErrorCodes
    sids = []
    while len(sids) < 3:
        data = await reader.read(65536)
        if not data:
            return
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.RequestReceived):
                sids.append(e.stream_id)
        writer.write(conn.data_to_send())
    first = min(sids)
    conn.send_headers(first, [(":status", "200"), ("content-length", "5")])
    conn.send_data(first, b"first", end_stream=True)
    conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=first)
    writer.write(conn.data_to_send())
    await writer.drain()
    await asyncio.sleep(0.5)


async def serve_h2(reader, writer, mode, hostile):
    import h2.config
    import h2.connection
    import h2.events
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
    conn.receive_data(PREFACE)
    writer.write(conn.data_to_send())
    if hostile and mode == "h2_goaway_midflight":
        await _goaway_midflight(reader, writer, conn)
        return
    while True:
        data = await reader.read(65536)
        if not data:
            return
        for e in conn.receive_data(data):
            if isinstance(e, h2.events.RequestReceived):
                if hostile:
                    head, chunks = h2_hostile(mode, conn, e.stream_id)
                    writer.write(conn.data_to_send())
                    await _send_all(writer, head, chunks)
                    hostile = False
                    if mode == "h2_goaway":
                        return
                    continue
                conn.send_headers(e.stream_id, [(":status", "200"), ("content-length", "2")])
                conn.send_data(e.stream_id, b"ok", end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()


async def _next_head(reader, data):
    """(the next request head, the bytes after it) out of ``data`` and
    what ``reader`` sends; None when the client closes first."""
    while b"\r\n\r\n" not in data:
        more = await reader.read(65536)
        if not more:
            return None
        data += more
    return data.split(b"\r\n\r\n", 1)


async def serve_h1(reader, writer, mode, hostile, first):
    data = first
    while True:
        got = await _next_head(reader, data)
        if got is None:
            return
        data = got[1]
        if hostile:
            head, chunks = h1_reply(mode)
            await _send_all(writer, head, chunks)
            if mode == "slow_head":
                await asyncio.sleep(30)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


def cookies_reply(head):
    """The reply of mode ``cookies`` to a request head (see the docstring)."""
    lines = head.split(b"\r\n")
    target = lines[0].split(b" ")[1].decode("latin-1")
    received = [line.split(b":", 1)[1].strip().decode("latin-1") for line in lines[1:]
                if line.lower().startswith(b"cookie:")]
    fields, location = [], None
    for key, value in parse_qsl(urlsplit(target).query, keep_blank_values=True,
                                encoding="latin-1"):
        if key == "set":
            fields.append(value.encode("latin-1"))
        elif key == "many":
            fields += [b"m%d=%d; Path=/" % (i, i) for i in range(int(value))]
        elif key == "huge":
            fields.append(b"huge=" + b"h" * int(value))
        elif key == "location":
            location = value.encode("latin-1")
    body = json.dumps({"path": target, "cookie": received}).encode()
    out = [b"HTTP/1.1 302 Found" if location else b"HTTP/1.1 200 OK"]
    out += [b"Set-Cookie: " + f for f in fields]
    if location:
        out.append(b"Location: " + location)
    out += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(out) + b"\r\n\r\n" + body


async def serve_cookies(reader, writer):
    data = b""
    while True:
        got = await _next_head(reader, data)
        if got is None:
            return
        head, data = got
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(data) < length:
            more = await reader.read(65536)
            if not more:
                return
            data += more
        data = data[length:]             # the body is not looked at
        writer.write(cookies_reply(head))
        await writer.drain()
        if b"\r\nconnection: close" in head.lower():
            return


def main():
    mode = sys.argv[1]
    counter = itertools.count()

    async def handle(reader, writer):
        index = next(counter)
        # h2_goaway: only the second connection is hostile, so a retry works
        hostile = index == 1 if mode.startswith("h2_goaway") else index >= 1
        try:
            if mode == "cookies":
                await serve_cookies(reader, writer)
                return
            first = await reader.readexactly(len(PREFACE)) if mode.startswith("h2_") else b""
            if first == PREFACE:
                await serve_h2(reader, writer, mode, hostile)
            else:
                await serve_h1(reader, writer, mode, hostile, first)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    asyncio.run(serve_streams(handle))


if __name__ == "__main__":
    main()
