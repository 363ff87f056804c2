"""A fake Momento cache server, the peer of ringline.momento's tests
(tests/support/momento_fake.py re-exports it) and of ``python -m
ringline.bench.momento_bench``: a ``cache_client.Scs`` servicer (the
momento-wire-types generated classes) on grpcio's aio server in a
subprocess on 127.0.0.1, storing in a dict. It lives in the package so that
an installed bench has it; it needs grpcio and momento-wire-types.

``python -m ringline.bench.momento_fake KEY`` prints its port and serves
until its stdin closes (then stops within 1 s). ``MomentoFake(key)``
starts and stops it.

Behaviour, as the service's: the ``authorization`` metadata must be KEY
(else UNAUTHENTICATED); ``KEY + "-readonly"`` may only read (writes:
PERMISSION_DENIED); the ``cache`` metadata must be present
(INVALID_ARGUMENT) and name one of the caches ``cache``, ``other``,
``bench`` (NOT_FOUND); TTLs in milliseconds expire items; increment of a
non-integer is FAILED_PRECONDITION.

Test controls (bytes handlers of ``fake.Control``, no auth): ``FailNext``
(``"<CODE> <n>"``: the next n Scs calls end with that status), ``Delay``
(``"<seconds>"``: every Scs call sleeps that long first; ``"0"`` stops),
``Short`` (``"<n>"``: the next n GetBatch replies leave out the last item),
``Calls`` (JSON: Scs calls seen per method), ``LastMetadata`` (JSON: the
metadata of the last Scs call), ``Reset`` (store, counters, failures).
"""
import asyncio
import json
import sys
import time

from ringline.bench.portchild import PortChild, serve_until_eof

CACHES = ("cache", "other", "bench")
_WRITES = {"Set", "SetBatch", "Delete", "Increment", "DictionarySet", "DictionaryIncrement",
           "DictionaryDelete"}


class _State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.store = {c: {} for c in CACHES}     # cache -> key -> [value, expires_at]
        self.calls = {}
        self.fail = None                          # [StatusCode, count]
        self.delay = 0.0
        self.short = 0                            # batch replies to cut one short
        self.last_md = {}


def _servicer(key, state):
    import grpc
    from momento_wire_types import cacheclient_pb2 as pb
    from momento_wire_types import cacheclient_pb2_grpc as pbg

    async def gate(name, ctx):
        """Auth, cache name, injected failures and delay; the cache's dict."""
        state.calls[name] = state.calls.get(name, 0) + 1
        md = dict(ctx.invocation_metadata())
        state.last_md = md
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.fail and state.fail[1] > 0:
            state.fail[1] -= 1
            await ctx.abort(state.fail[0], "injected failure")
        auth = md.get("authorization")
        if auth == key + "-readonly":
            if name in _WRITES:
                await ctx.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "Insufficient permissions to perform an operation on a cache")
        elif auth != key:
            await ctx.abort(grpc.StatusCode.UNAUTHENTICATED, "Invalid signature")
        cache = md.get("cache")
        if not cache:
            await ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "Cache header is missing")
        if cache not in state.store:
            await ctx.abort(grpc.StatusCode.NOT_FOUND, f"Cache not found: {cache}")
        return state.store[cache]

    def live(items, k):
        item = items.get(k)
        if item is not None and item[1] <= time.monotonic():
            del items[k]
            item = None
        return item

    def put(items, k, value, ttl_ms):
        items[k] = [value, time.monotonic() + ttl_ms / 1000.0]

    def get_one(items, k):
        item = live(items, k)
        if item is None or not isinstance(item[0], bytes):
            return pb._GetResponse(result=pb.Miss)
        return pb._GetResponse(result=pb.Hit, cache_body=item[0])

    def dictionary(items, name, ttl_ms, refresh, create):
        item = live(items, name)
        if item is None or not isinstance(item[0], dict):
            if not create:
                return None
            put(items, name, {}, ttl_ms)
            item = items[name]
        elif refresh:
            item[1] = time.monotonic() + ttl_ms / 1000.0
        return item[0]

    class Scs(pbg.ScsServicer):
        async def Get(self, req, ctx):
            items = await gate("Get", ctx)
            return get_one(items, req.cache_key)

        async def GetBatch(self, req, ctx):
            items = await gate("GetBatch", ctx)
            replies = [get_one(items, r.cache_key) for r in req.items]
            if state.short > 0:
                state.short -= 1
                replies.pop()
            for r in replies:
                yield r

        async def Set(self, req, ctx):
            items = await gate("Set", ctx)
            put(items, req.cache_key, req.cache_body, req.ttl_milliseconds)
            return pb._SetResponse(result=pb.Ok)

        async def SetBatch(self, req, ctx):
            items = await gate("SetBatch", ctx)
            for r in req.items:
                put(items, r.cache_key, r.cache_body, r.ttl_milliseconds)
                yield pb._SetResponse(result=pb.Ok)

        async def Delete(self, req, ctx):
            items = await gate("Delete", ctx)
            items.pop(req.cache_key, None)
            return pb._DeleteResponse()

        async def Increment(self, req, ctx):
            items = await gate("Increment", ctx)
            item = live(items, req.cache_key)
            try:
                n = int(item[0]) if item is not None else 0
            except (TypeError, ValueError):
                await ctx.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "Value stored is not an integer")
            n += req.amount
            if item is None:
                put(items, req.cache_key, b"%d" % n, req.ttl_milliseconds)
            else:
                item[0] = b"%d" % n
            return pb._IncrementResponse(value=n)

        async def ItemGetTtl(self, req, ctx):
            items = await gate("ItemGetTtl", ctx)
            item = live(items, req.cache_key)
            if item is None:
                return pb._ItemGetTtlResponse(missing=pb._ItemGetTtlResponse._Missing())
            left = int((item[1] - time.monotonic()) * 1000)
            return pb._ItemGetTtlResponse(
                found=pb._ItemGetTtlResponse._Found(remaining_ttl_millis=max(left, 0)))

        async def DictionarySet(self, req, ctx):
            items = await gate("DictionarySet", ctx)
            d = dictionary(items, req.dictionary_name, req.ttl_milliseconds, req.refresh_ttl,
                           True)
            for p in req.items:
                d[p.field] = p.value
            return pb._DictionarySetResponse()

        async def DictionaryGet(self, req, ctx):
            items = await gate("DictionaryGet", ctx)
            d = dictionary(items, req.dictionary_name, 0, False, False)
            R = pb._DictionaryGetResponse
            if d is None:
                return R(missing=R._Missing())
            parts = [R._DictionaryGetResponsePart(result=pb.Hit, cache_body=d[f]) if f in d
                     else R._DictionaryGetResponsePart(result=pb.Miss) for f in req.fields]
            return R(found=R._Found(items=parts))

        async def DictionaryFetch(self, req, ctx):
            items = await gate("DictionaryFetch", ctx)
            d = dictionary(items, req.dictionary_name, 0, False, False)
            R = pb._DictionaryFetchResponse
            if d is None:
                return R(missing=R._Missing())
            return R(found=R._Found(items=[pb._DictionaryFieldValuePair(field=f, value=v)
                                           for f, v in d.items()]))

        async def DictionaryIncrement(self, req, ctx):
            items = await gate("DictionaryIncrement", ctx)
            d = dictionary(items, req.dictionary_name, req.ttl_milliseconds, req.refresh_ttl,
                           True)
            try:
                n = int(d.get(req.field, b"0")) + req.amount
            except ValueError:
                await ctx.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "Value stored is not an integer")
            d[req.field] = b"%d" % n
            return pb._DictionaryIncrementResponse(value=n)

        async def DictionaryDelete(self, req, ctx):
            items = await gate("DictionaryDelete", ctx)
            d = dictionary(items, req.dictionary_name, 0, False, False)
            if d is not None:
                if req.WhichOneof("delete") == "all":
                    d.clear()
                else:
                    for f in req.some.fields:
                        d.pop(f, None)
                if not d:
                    items.pop(req.dictionary_name, None)
            return pb._DictionaryDeleteResponse()

    return Scs(), pbg.add_ScsServicer_to_server


def _control(state):
    import grpc

    async def fail_next(req, ctx):
        code, n = req.decode().split()
        state.fail = [getattr(grpc.StatusCode, code), int(n)]
        return b"ok"

    async def delay(req, ctx):
        state.delay = float(req)
        return b"ok"

    async def short(req, ctx):
        state.short = int(req)
        return b"ok"

    async def calls(req, ctx):
        return json.dumps(state.calls).encode()

    async def last_md(req, ctx):
        return json.dumps(state.last_md).encode()

    async def reset(req, ctx):
        state.reset()
        return b"ok"

    uu = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler("fake.Control", {
        "FailNext": uu(fail_next), "Delay": uu(delay), "Short": uu(short), "Calls": uu(calls),
        "LastMetadata": uu(last_md), "Reset": uu(reset)})


def main():
    import grpc
    key = sys.argv[1]

    async def serve():
        state = _State()
        server = grpc.aio.server()
        servicer, add = _servicer(key, state)
        add(servicer, server)
        server.add_generic_rpc_handlers((_control(state),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await serve_until_eof(port)
        await server.stop(1)

    asyncio.run(serve())


class MomentoFake(PortChild):
    """The fake in a subprocess: ``.port``, ``.target``, ``.key``; ``close()``."""

    def __init__(self, key="test-key"):
        self.key = key
        super().__init__([sys.executable, "-m", "ringline.bench.momento_fake", key],
                         what="the fake Momento server")


if __name__ == "__main__":
    main()
