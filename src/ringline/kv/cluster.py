"""The CLUSTER command family of ringline.kv (and READONLY/READWRITE/ASKING),
enough for cluster-aware clients to learn which shard owns which slots.

Owns: the replies of CLUSTER SLOTS, SHARDS, NODES, INFO, KEYSLOT, MYID,
built from the shard layout (`shard.layout`: (first slot, last slot,
b"host:port") per shard, in shard order) and a stable node id per shard.

Lifecycle: stateless; called by the dispatcher with (shard, session, args).
With a single shard (no layout) the server is not a cluster and answers as
Redis does with cluster support disabled.

Invariants: every shard reports the same layout, so any node a client asks
gives the same slot map; node ids depend only on the shard's address.
"""
from __future__ import annotations

import hashlib
from typing import Any, List

from .resp import OK, Error, Map
from .slots import SLOTS, key_slot

__all__ = ["cmd_cluster", "cmd_ok", "node_id"]

DISABLED = Error(b"ERR This instance has cluster support disabled")


def node_id(address: bytes) -> bytes:
    return hashlib.sha1(b"ringline-kv " + address).hexdigest().encode()


def _host_port(address: bytes) -> tuple:
    host, _, port = address.rpartition(b":")
    return host, int(port)


def cmd_ok(sh: Any, se: Any, a: List[bytes]) -> Any:
    """READONLY / READWRITE / ASKING: accepted (every shard is a master)."""
    return OK


def cmd_cluster(sh: Any, se: Any, a: List[bytes]) -> Any:
    sub = a[1].lower()
    if sub == b"keyslot" and len(a) == 3:
        return key_slot(a[2])
    layout = sh.layout
    if not layout:
        return DISABLED
    me = layout[sh.shard_id][2]
    if sub == b"slots":
        out = []
        for lo, hi, addr in layout:
            host, port = _host_port(addr)
            out.append([lo, hi, [host, port, node_id(addr)]])
        return out
    if sub == b"shards":
        out = []
        for lo, hi, addr in layout:
            host, port = _host_port(addr)
            node = Map([b"id", node_id(addr), b"port", port, b"ip", host, b"endpoint", host,
                        b"role", b"master", b"replication-offset", 0, b"health", b"online"])
            out.append(Map([b"slots", [lo, hi], b"nodes", [node]]))
        return out
    if sub == b"nodes":
        lines = []
        for i, (lo, hi, addr) in enumerate(layout):
            flags = b"myself,master" if addr == me else b"master"
            host, port = _host_port(addr)
            lines.append(b"%s %s:%d@0 %s - 0 0 %d connected %d-%d"
                         % (node_id(addr), host, port, flags, i + 1, lo, hi))
        return b"\n".join(lines) + b"\n"
    if sub == b"info":
        n = len(layout)
        return (b"cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:%d\r\n"
                b"cluster_slots_ok:%d\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n"
                b"cluster_known_nodes:%d\r\ncluster_size:%d\r\ncluster_current_epoch:%d\r\n"
                b"cluster_my_epoch:%d\r\n" % (SLOTS, SLOTS, n, n, n, sh.shard_id + 1))
    if sub == b"myid":
        return node_id(me)
    return Error(b"ERR unknown subcommand '%s'. Try CLUSTER HELP." % a[1][:128])
