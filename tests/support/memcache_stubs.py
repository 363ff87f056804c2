"""Stub memcache servers (stdlib asyncio in a thread, on support.servers'
ThreadedServer) for the ringline.memcache client tests.

* ``StubServer`` answers each request line with a canned reply chosen by its
  key: truncated, garbage, bad lengths, missing CRLF, a reply that never
  ends, the wrong reply type; a ``set`` of key ``nrerr`` with noreply gets a
  SERVER_ERROR all the same.
* ``MemStub`` is a tiny in-memory memcache that records every request line
  (to check how gets were merged); keys ``srverr``, ``stranger`` and
  ``garbled`` make it answer wrongly.

Lifecycle: a context manager; the server thread and every connection end
when the ``with`` block does.
"""
import asyncio

from support.servers import ThreadedServer


class StubServer(ThreadedServer):
    """Answers each request line with a canned reply chosen by the key."""

    REPLIES = {
        b"truncated": (b"VALUE truncated 0 10\r\nabc", True),       # then close
        b"garbage": (b"HELLO THERE\r\n", False),
        b"badlen": (b"VALUE badlen 0 zz\r\nabc\r\nEND\r\n", False),
        b"nocrlf": (b"VALUE nocrlf 0 3\r\nabcdef\r\nEND\r\n", False),
        b"silent": (b"VALUE silent 0 10\r\nabc", None),             # then hang
        b"wrongtype": (b"STORED\r\n", False),
        b"ok": (b"VALUE ok 0 2\r\nok\r\nEND\r\n", False),
    }

    async def _handle(self, reader, writer):
        """Each request line to ``_answer`` until the client closes, the
        answer says to stop, or the connection fails; then close it."""
        try:
            while True:
                line = await reader.readline()
                if not line or not await self._answer(line, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, line, reader, writer):
        """Answer one request line (reading its data block from ``reader``);
        False closes the connection."""
        parts = line.split()
        if parts[:1] == [b"set"]:
            await reader.readexactly(int(parts[4]) + 2)
            if b"noreply" not in parts:
                writer.write(b"STORED\r\n")
            elif parts[1] == b"nrerr":   # an error despite noreply
                writer.write(b"SERVER_ERROR out of memory storing object\r\n")
            return True
        if parts[:1] == [b"mn"]:
            writer.write(b"MN\r\n")
            return True
        key = parts[1] if len(parts) > 1 else b""
        reply, close = self.REPLIES.get(key, (b"END\r\n", False))
        writer.write(reply)
        await writer.drain()
        if close:
            return False
        if close is None:
            await self._stop.wait()
        return True


class MemStub(StubServer):
    """A tiny in-memory memcache (get/gets/set/delete/mg/mn/version) that
    records every request line. Keys with a meaning: ``srverr`` makes the
    whole get reply SERVER_ERROR, ``stranger`` adds a VALUE for a key nobody
    asked for, ``garbled`` answers garbage."""

    def __init__(self):
        super().__init__()
        self.lines = []
        self.store = {}
        self._cas = 0

    def get_lines(self):
        return [ln for ln in self.lines if ln.split()[0] in (b"get", b"gets")]

    async def _answer(self, line, reader, writer):
        line = line.rstrip(b"\r\n")
        self.lines.append(line)
        parts = line.split()
        cmd = parts[0]
        if cmd in (b"get", b"gets"):
            keys = parts[1:]
            if b"srverr" in keys:
                writer.write(b"SERVER_ERROR out of memory\r\n")
                return True
            if b"garbled" in keys:
                writer.write(b"VALUE garbled 0 zz\r\n")
                return True
            out = []
            for k in keys + ([b"nobody"] if b"stranger" in keys else []):
                if k == b"nobody" or k in self.store:
                    flags, v, cas = self.store.get(k, (0, b"?", 1))
                    head = b"VALUE %b %d %d" % (k, flags, len(v))
                    if cmd == b"gets":
                        head += b" %d" % cas
                    out.append(head + b"\r\n" + v + b"\r\n")
            writer.write(b"".join(out) + b"END\r\n")
        elif cmd == b"set":
            data = (await reader.readexactly(int(parts[4]) + 2))[:-2]
            self._cas += 1
            self.store[parts[1]] = (int(parts[2]), data, self._cas)
            if b"noreply" not in parts:
                writer.write(b"STORED\r\n")
        elif cmd == b"delete":
            found = self.store.pop(parts[1], None) is not None
            writer.write(b"DELETED\r\n" if found else b"NOT_FOUND\r\n")
        elif cmd == b"mg":
            item = self.store.get(parts[1])
            if item is None:
                writer.write(b"EN\r\n")
            else:
                writer.write(b"VA %d\r\n%b\r\n" % (len(item[1]), item[1]))
        elif cmd == b"mn":
            writer.write(b"MN\r\n")
        elif cmd == b"version":
            writer.write(b"VERSION 1.6.0-stub\r\n")
        else:
            writer.write(b"ERROR\r\n")
        return True
