"""ringline.kv: a Redis-compatible key-value server on ringline's native
runtime, and the reusable pieces it proves (docs/kv.md).

Modules (one job each):
  resp       request parsing (RESP arrays and inline) and reply encoding
  store      one shard's keyspace: values, expiry deadlines, active expiry
  datatypes  the data commands (strings, keys/expiry, hashes, lists, sets)
  commands   dispatch (arity, routing, journalling) and the server commands
  cluster    CLUSTER SLOTS/SHARDS/NODES/INFO/KEYSLOT for several shards
  slots      key -> hash slot, and the slot ranges of the shards
  journal    Journal: append-only log, CRC per record, group commit, recovery
  gate       ReplyGate and DurabilityCursor (held replies, slow-client cap)
  backlog    replication frames, the per-shard Backlog ring, FrameReader
  repl       WriteLog and the serving side of replication (Primary; on a
             replica it relays its primary's history to sub-replicas)
  follower   the replica's side of replication (Follower)
  server     KvOptions and KvServer (the ringline Handler)
  __main__   `python -m ringline.kv`: command line -> ringline.serve

Layering: the top layer. It imports the runtime, the connection layer and
the redis client's sans-IO encoder (ringline.redis._resp); nothing in
ringline imports it.
"""
from __future__ import annotations

from .backlog import Backlog, FrameReader, frame
from .follower import Follower
from .gate import POLICIES, Deferred, DurabilityCursor, ReplyGate
from .journal import Journal, JournalError
from .repl import Primary, WriteLog
from .resp import Limits
from .server import KvOptions, KvServer

__all__ = ["Journal", "JournalError", "ReplyGate", "DurabilityCursor", "Deferred", "POLICIES",
           "Backlog", "FrameReader", "frame", "WriteLog", "Primary", "Follower",
           "KvOptions", "KvServer", "Limits"]
