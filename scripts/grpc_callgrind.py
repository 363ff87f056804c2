"""Instructions per unary gRPC call, for docs/grpc.md's callgrind table.

Owns one measurement: N unary echo calls (16 bytes) with C in flight (C
tasks, N/C calls each, one shared channel) by one client (ringline, grpcio
or grpclib, the same set-up as ``ringline bench grpc``) against a running
bench server, run under valgrind's callgrind twice (N and 3N calls); the
difference of the two instruction counts over 2N calls cancels start-up
and import costs. Only loopback (127.0.0.1) is a target.

    python -m ringline.bench.grpc_bench --server    # prints PORT, serves until stdin closes
    python scripts/grpc_callgrind.py PORT ringline 100 [N]

With ``--calls`` it is the client under measurement (what callgrind runs).
"""
import asyncio
import re
import subprocess
import sys


def _calls(client: str, port: int, n: int, c: int) -> None:
    from ringline.bench.grpc_bench import METHOD, PAYLOAD, _grpclib_codec

    async def drive(call):
        async def one(k):
            for _ in range(k):
                assert await call(PAYLOAD) == PAYLOAD
        await asyncio.gather(*[one(n // c) for _ in range(c)])

    async def main():
        target = f"127.0.0.1:{port}"
        if client == "ringline":
            import ringline.grpc as rg
            async with rg.Channel(target) as ch:
                await drive(ch.unary_unary(METHOD))
        elif client == "grpcio":
            import grpc
            async with grpc.aio.insecure_channel(target) as ch:
                await drive(ch.unary_unary(METHOD))
        else:
            from grpclib.client import Channel, UnaryUnaryMethod
            ch = Channel("127.0.0.1", port, codec=_grpclib_codec())
            try:
                await drive(UnaryUnaryMethod(ch, METHOD, bytes, bytes))
            finally:
                ch.close()

    if client == "ringline":
        import ringline
        ringline.run(main())
    else:
        import uvloop
        uvloop.run(main())


def _collected(args: list) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, __file__, "--calls"] + args,
                         capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main() -> None:
    if sys.argv[1] == "--calls":
        _calls(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    port, client, c = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    a = _collected([client, port, str(n), str(c)])
    b = _collected([client, port, str(3 * n), str(c)])
    print(f"{client} {c} in flight: {(b - a) // (2 * n):,} instructions per call")


if __name__ == "__main__":
    main()
