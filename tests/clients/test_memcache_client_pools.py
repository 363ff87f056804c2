"""ringline.memcache Pool (round robin, surviving a server restart, connect
failure then recovery) and ShardedClient (keys routed by ketama), against
real memcached servers.

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll). The
``server`` (one real memcached per module) and ``port`` (flushed for each
test) fixtures are in tests/clients/conftest.py; the stub servers in
support/memcache_stubs.py.
"""
import asyncio

import pytest

import ringline
import ringline.memcache as mc
from ringline._util.ketama import Ketama
from support import run
from support.memcached import Memcached, have_memcached


pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


# ---------------------------------------------------------------------------
# Pool and ShardedClient


def test_pool_round_robin_and_survives_a_restart():
    async def main(m):
        async with mc.Pool("127.0.0.1", m.port, size=3) as pool:
            assert pool.connected == 0                   # lazy
            assert await pool.set(b"k", b"v")
            assert await asyncio.gather(*(pool.get(b"k") for _ in range(30))) == [b"v"] * 30
            assert pool.connected == 3
            clients = {id(await pool.client()) for _ in range(6)}
            assert len(clients) == 3

            await asyncio.to_thread(m.restart)          # same port, empty cache
            ok = 0
            errors = 0
            for _ in range(200):
                try:
                    await pool.set(b"k2", b"after")
                    assert await pool.get(b"k2") == b"after"
                    ok += 1
                    if ok >= 10:
                        break
                except (ConnectionError, OSError):
                    errors += 1
                    await asyncio.sleep(0.02)
            assert ok >= 10, errors
            assert pool.connected == 3 or pool.connected >= 1
            assert pool.reconnects >= 1
            assert await asyncio.gather(*(pool.get(b"k2") for _ in range(30))) == [b"after"] * 30
        with pytest.raises(ringline.ConnectionClosed):
            pool.get(b"k")
    m = Memcached().start()
    try:
        run(main, m)
    finally:
        m.stop()


def test_pool_connect_failure_then_recovery():
    async def main(m):
        pool = mc.Pool("127.0.0.1", m.port, size=2, timeout=2)
        with pytest.raises(OSError):
            await pool.get(b"k")
        await asyncio.to_thread(m.start)
        assert await pool.set(b"k", b"v") and await pool.get(b"k") == b"v"
        await pool.close()
    m = Memcached()
    try:
        run(main, m)
    finally:
        m.stop()


def test_sharded_client_routes_by_ketama():
    servers = [Memcached().start() for _ in range(3)]
    try:
        nodes = {s.address: w for s, w in zip(servers, (1, 2, 3))}

        async def main():
            ring = Ketama(nodes)
            async with mc.ShardedClient(nodes, pool_size=2) as sc:
                keys = [b"key:%d" % i for i in range(300)]
                assert all(await asyncio.gather(*(sc.set(k, k + b"!") for k in keys)))
                assert await sc.get_many(keys) == {k: k + b"!" for k in keys}
                assert await sc.get(b"key:7") == b"key:7!"
                assert (await sc.mg(b"key:8", "v")).value == b"key:8!"
                assert await sc.gat(100, b"key:9") == b"key:9!"
                assert sc.node_for(b"key:1") == ring.node_for(b"key:1")
                # each key lives on exactly the server ketama names
                per_node = {}
                for s in servers:
                    async with mc.connect("127.0.0.1", s.port) as c:
                        per_node[s.address] = set(await c.get_many(keys))
                for k in keys:
                    owners = [n for n, ks in per_node.items() if k in ks]
                    assert owners == [ring.node_for(k)]
                assert all(len(v) > 20 for v in per_node.values())
                versions = await sc.version()
                assert set(versions) == set(nodes)
                await sc.flush_all()
                assert await sc.get_many(keys) == {}
        run(main)
    finally:
        for s in servers:
            s.stop()
