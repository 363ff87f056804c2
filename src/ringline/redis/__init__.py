"""ringline.redis: a fast Redis client on ringline's native connections.

Owns nothing itself: it names the parts and their public API.

Public API:
    connect(host, port, **options) / connect(url=...)  -> Client
    Client        one connection, automatic pipelining, pipeline(), fire/recv,
                  set_guarded (zero-copy large values), typed helpers
    Pool          a fixed number of Clients used round-robin, lazy reconnect
    ShardedClient keys spread over several servers by ketama hashing
    ClusterClient Redis Cluster: slot map, MOVED/ASK, retries
    key_slot      the cluster slot of a key (CRC16 with hash tags)
    the RedisError hierarchy, Push, parse_info

Layout: _resp (sans-IO wire format), _commands (typed helpers), _options
(Options, URLs), _connection (one connection: FIFO, reader, parsers), _client
(Client), _pipeline (Pipeline), _pool (Pool, ShardedClient), _cluster
(ClusterClient). See docs/redis.md.

Lifecycle: a `Client` lives from `connect()` to `close()` (reconnecting
lazily after a failure); `Pool`, `ShardedClient` and `ClusterClient` own
their clients and close them with themselves.

Invariants: nothing here keeps global state: every object belongs to the
loop it was created on; replies are matched to commands strictly in order
(see `_connection`).
"""
from ._client import Client, Options, Pipeline, connect, options_from_url
from ._cluster import ClusterClient, connect_cluster, key_slot
from ._commands import Commands, parse_info
from ._errors import (AskError, AuthenticationError, BusyError, ClusterDownError,
                      CrossSlotError, LoadingError, MovedError, NoPermissionError,
                      ProtocolError, RedisConnectionError, RedisError, RedisTimeoutError,
                      ResponseError, TryAgainError, WrongTypeError)
from ._pool import Pool, ShardedClient, connect_pool, connect_sharded
from ._resp import Push

__all__ = [
    "connect", "Client", "Options", "Pipeline", "options_from_url",
    "Pool", "connect_pool", "ShardedClient", "connect_sharded",
    "ClusterClient", "connect_cluster", "key_slot", "Commands", "parse_info", "Push",
    "RedisError", "ResponseError", "WrongTypeError", "MovedError", "AskError",
    "TryAgainError", "LoadingError", "AuthenticationError", "NoPermissionError",
    "CrossSlotError", "ClusterDownError", "BusyError", "ProtocolError",
    "RedisConnectionError", "RedisTimeoutError",
]
