"""ringline.memcache: a memcached client on ringline's native connections.

    client = await ringline.memcache.connect("127.0.0.1", 11211)
    await client.set(b"k", b"v")
    assert await client.get(b"k") == b"v"
    await client.close()

What it owns: the ASCII protocol (classic commands with noreply variants and
the meta commands mg/ms/md/ma/mn), automatic pipelining (commands from
concurrent tasks share sends; replies are matched in order), fire/recv,
connection pools (`Pool`) and ketama sharding (`ShardedClient`).

Layout: `_proto` is the sans-IO core (key checks, encoders, the incremental
reply parser, result and error types); `_client` is the I/O glue for one
connection (`Client`, `connect`); `_pool` holds `Pool` and `ShardedClient`.
See docs/memcache.md for the API reference.

Errors: `MemcacheError` is the base; `ReplyError` (`CommandError`,
`ClientError`, `ServerError`) fails only the command it answered;
`ProtocolError` (an unparsable reply, or a reply over `max_value_size`)
closes the connection and fails every command pending on it.

Lifecycle: a `Client` lives from `connect()` to `close()` on the loop it was
created on; a `Pool` or `ShardedClient` owns its clients and closes them
with itself.  Invariants: replies are matched to commands strictly in order
(see `_client` and `_matcher`); this file only names the parts.
"""
from ._client import Client, connect
from ._pool import Pool, ShardedClient
from ._proto import (ClientError, CommandError, Item, MemcacheError, MetaResult,
                     ProtocolError, ReplyError, ResponseParser, ServerError, check_key)

__all__ = ["connect", "Client", "Pool", "ShardedClient", "Item", "MetaResult",
           "MemcacheError", "ProtocolError", "ReplyError", "CommandError", "ClientError",
           "ServerError", "ResponseParser", "check_key"]
