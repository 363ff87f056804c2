"""ringline.kv with two shards (two worker processes): keys partitioned by
hash slot, MOVED for a key of the other shard, CLUSTER SLOTS/SHARDS for
cluster-aware clients (redis-py's RedisCluster, ringline.redis's
ClusterClient), CROSSSLOT for multi-key commands across slots."""
from __future__ import annotations

import pytest

from ringline.kv.slots import key_slot, split
from support.kv_server import KvServer, RespConn


@pytest.fixture(scope="module")
def kv():
    with KvServer(workers=2) as srv:
        yield srv


def _key_for_shard(shard, n=2):
    lo, hi = split(n)[shard]
    i = 0
    while True:
        k = f"key{i}"
        if lo <= key_slot(k.encode()) <= hi:
            return k
        i += 1


def test_moved_names_the_owner(kv):
    k0, k1 = _key_for_shard(0), _key_for_shard(1)
    with RespConn(kv.port + 1) as s0, RespConn(kv.port + 2) as s1:
        assert s0.call("SET", k0, "a") == b"OK"
        moved = str(s0.call("SET", k1, "b"))
        assert moved == f"MOVED {key_slot(k1.encode())} 127.0.0.1:{kv.port + 2}"
        assert s1.call("SET", k1, "b") == b"OK"
        assert s0.call("GET", k1).__class__.__name__.endswith("Error")
        assert s0.call("DBSIZE") == 1 and s1.call("DBSIZE") == 1
        assert "CROSSSLOT" in str(s0.call("MSET", "{a}1", "x", "{b}1", "y"))
        assert s0.call("CLUSTER", "KEYSLOT", "foo") == 12182
        slots = s1.call("CLUSTER", "SLOTS")
        assert [(r[0], r[1], r[2][1]) for r in slots] == \
            [(0, 8191, kv.port + 1), (8192, 16383, kv.port + 2)]
        assert s0.call("PING") == b"PONG"          # keyless commands run anywhere
        s0.call("FLUSHALL")
        s1.call("FLUSHALL")


def test_redis_py_cluster_client(kv):
    redis_cluster = pytest.importorskip("redis.cluster")
    rc = redis_cluster.RedisCluster(host="127.0.0.1", port=kv.port)
    try:
        for i in range(200):
            rc.set(f"user:{i}", i)
        assert [rc.get(f"user:{i}") for i in range(200)] == [str(i).encode()
                                                              for i in range(200)]
        assert rc.mset_nonatomic({"{t}a": 1, "{t}b": 2}) == [True]
        assert rc.hset("h", "f", "v") == 1 and rc.hgetall("h") == {b"f": b"v"}
    finally:
        rc.close()
    sizes = []
    for shard in range(2):
        with RespConn(kv.port + 1 + shard) as c:
            sizes.append(c.call("DBSIZE"))
            c.call("FLUSHALL")
    assert sum(sizes) == 203 and min(sizes) > 50


def test_ringline_cluster_client(kv, run):
    from ringline.redis import connect_cluster

    async def main():
        cc = await connect_cluster([("127.0.0.1", kv.port)])
        try:
            for i in range(100):
                await cc.execute("SET", f"c{i}", str(i))
            got = [await cc.execute("GET", f"c{i}") for i in range(100)]
            assert got == [str(i).encode() for i in range(100)]
        finally:
            await cc.close()
    run(main)
