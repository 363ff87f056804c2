"""ringline's public API as a typed program sees it; `mypy --strict` passes on
this file (tests/test_typing.py runs it), so the stubs of the native module
and the package's annotations give real types, not Any.

Run it: `python examples/typed_usage.py` starts an echo server (one worker),
talks to it with `ringline.connect` and stops it. The Redis and memcached
functions run only when given a server: `--redis PORT` / `--memcache PORT`
(on 127.0.0.1).
"""
from __future__ import annotations

import argparse
from typing import Optional

import ringline
import ringline.memcache
import ringline.redis


class Echo(ringline.Handler):
    """Echoes every byte back, from the receive completion."""

    async def on_accept(self, conn: ringline.Conn) -> None:
        def on_data(view: memoryview) -> int:
            conn.send_nowait(bytes(view))
            return len(view)

        consumed: int = await conn.on_data(on_data)
        assert consumed >= 0


async def echo_once(port: int, payload: bytes) -> bytes:
    conn: ringline.Conn = await ringline.connect(("127.0.0.1", port), timeout=5.0)
    try:
        sent: int = await conn.send(payload)
        assert sent == len(payload)
        got = bytearray()

        def take(view: memoryview) -> int:
            got.extend(view)
            return len(view)

        while len(got) < len(payload):
            if await conn.with_data(take) == 0:
                break                     # EOF
        return bytes(got)
    finally:
        conn.close()


async def redis_roundtrip(port: int) -> Optional[bytes]:
    client: ringline.redis.Client = await ringline.redis.connect("127.0.0.1", port)
    try:
        await client.set(b"typed-usage", b"value")
        value = await client.get(b"typed-usage")
        return None if value is None else bytes(value)
    finally:
        await client.close()


async def memcache_roundtrip(port: int) -> Optional[bytes]:
    client: ringline.memcache.Client = await ringline.memcache.connect("127.0.0.1", port)
    try:
        stored: bool = await client.set(b"typed-usage", b"value")
        assert stored
        return await client.get(b"typed-usage")
    finally:
        await client.close()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", type=int, default=None, metavar="PORT")
    parser.add_argument("--memcache", type=int, default=None, metavar="PORT")
    args = parser.parse_args(argv)

    config = ringline.Config(workers=1, grace=1.0)
    runtime: ringline.Runtime = ringline.launch(Echo, ("127.0.0.1", 0), config)
    try:
        port = runtime.port
        assert port is not None
        print(ringline.run(echo_once(port, b"hello, ringline")))
    finally:
        runtime.shutdown(0)
        runtime.join(10)
    if args.redis is not None:
        print(ringline.run(redis_roundtrip(args.redis)))
    if args.memcache is not None:
        print(ringline.run(memcache_roundtrip(args.memcache)))


if __name__ == "__main__":
    main()
