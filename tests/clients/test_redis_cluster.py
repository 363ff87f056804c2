"""ringline.redis.ClusterClient against a real 3-master Redis Cluster.

The cluster (three cluster-enabled redis-server processes joined with
``redis-cli --cluster create``) is built once per module. Tests that move
slots or stop a node leave the cluster consistent for the ones after them
(the client always learns the map from the servers). Runs on whichever
backend RINGLINE_BACKEND selects.
"""
import asyncio

import pytest

import ringline.redis as rr
from ringline.redis._cluster import (key_slot, parse_cluster_shards, parse_cluster_slots)
from ringline.redis._resp import NEED_MORE, Parser
from support import run
from support.redis_server import RedisCluster, have_redis, sync_command

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")


@pytest.fixture(scope="module")
def cluster():
    c = RedisCluster().start()
    yield c
    c.close()


@pytest.fixture
def seeds(cluster):
    for n in cluster.nodes:
        sync_command(n.port, "FLUSHALL")
        sync_command(n.port, "CONFIG", "RESETSTAT")
    return [f"127.0.0.1:{n.port}" for n in cluster.nodes]


def _owner_port(cluster, key):
    return cluster.slot_owner_ports(cluster.nodes[0].port)[key_slot(key)]


# ---------------------------------------------------------------------------
# slots


def test_key_slot_matches_the_server(cluster):
    keys = [b"", b"a", b"foo", b"123456789", b"{user1000}.following", b"{user1000}.followers",
            b"foo{}{bar}", b"foo{{bar}}zap", b"foo{bar}{zap}", b"{}", b"}{", b"x{y",
            "ключ".encode(), bytes(range(256))]
    port = cluster.nodes[0].port
    for k in keys:
        assert key_slot(k) == sync_command(port, "CLUSTER", "KEYSLOT", k), k
    assert key_slot(b"123456789") == 0x31C3 % 16384
    assert key_slot("{user1000}.a") == key_slot(b"user1000")
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")


def test_slot_map_parsers_agree(cluster):
    port = cluster.nodes[0].port
    slots = parse_cluster_slots(sync_command(port, "CLUSTER", "SLOTS"), "127.0.0.1")
    shards = parse_cluster_shards(sync_command(port, "CLUSTER", "SHARDS"), "127.0.0.1")
    assert sorted(slots) == sorted(shards)
    covered = sum(hi - lo + 1 for lo, hi, _ in slots)
    assert covered == 16384
    assert {addr for _, _, addr in slots} == set(cluster.addresses)


# ---------------------------------------------------------------------------
# routing


@pytest.mark.parametrize("proto", [2, 3])
def test_keys_spread_over_all_three_nodes(cluster, seeds, proto):
    async def main():
        async with await rr.connect_cluster(seeds, protocol=proto) as cc:
            assert sorted(cc.masters) == sorted(cluster.addresses)
            await asyncio.gather(*[cc.set(f"key:{i}", i) for i in range(300)])
            got = await asyncio.gather(*[cc.get(f"key:{i}") for i in range(300)])
            assert got == [str(i).encode() for i in range(300)]
            assert await cc.dbsize() == 300
            assert len(await cc.keys("key:*")) == 300
            assert len({k async for k in cc.scan_iter(match="key:*")}) == 300
            # typed helpers of other kinds, hash tags for multi-key commands
            assert await cc.hset("h", mapping={"a": 1}) == 1
            assert await cc.hgetall("h") == {b"a": b"1"}
            assert await cc.mset({"{u1}a": 1, "{u1}b": 2}) is True
            assert await cc.mget("{u1}a", "{u1}b") == [b"1", b"2"]
            assert await cc.delete("{u1}a", "{u1}b") == 2
            # generic execute finds the key (table, then COMMAND INFO / GETKEYS)
            assert await cc.execute("SET", "gen", "v") == b"OK"
            assert await cc.execute("GET", "gen") == b"v"
            assert await cc.execute("EVAL", "return redis.call('GET', KEYS[1])", 1, "gen") \
                == b"v"
            assert await cc.execute("OBJECT", "ENCODING", "gen") in (b"embstr", b"raw")
            assert await cc.ping() is True
            # a pipeline spanning every node comes back in order
            async with cc.pipeline() as p:
                for i in range(100):
                    p.get(f"key:{i}")
                assert await p.execute() == [str(i).encode() for i in range(100)]
            tx = cc.pipeline(transaction=True)
            tx.incr("{t}n").incr("{t}n")
            assert await tx.execute() == [1, 2]
            assert cc.stats["moved"] == 0 and cc.stats["ask"] == 0
    run(main())
    per_node = [sync_command(n.port, "DBSIZE") for n in cluster.nodes]
    assert all(n > 50 for n in per_node), per_node       # every master got keys
    for i in range(0, 300, 37):
        key = f"key:{i}"
        assert sync_command(_owner_port(cluster, key), "GET", key) == str(i).encode()


def _cmdstat(port, name):
    info = rr.parse_info(sync_command(port, "INFO", "commandstats"))
    entry = info.get(f"cmdstat_{name}")
    if entry is None:
        return 0
    # commands the server refused (CROSSSLOT) count as rejected_calls
    return entry["calls"] + entry.get("rejected_calls", 0) + entry.get("failed_calls", 0)


def test_crossslot_is_refused_before_sending(cluster, seeds):
    async def main():
        async with await rr.connect_cluster(seeds) as cc:
            assert key_slot("a") != key_slot("b")
            with pytest.raises(rr.CrossSlotError):
                await cc.mget("a", "b")
            with pytest.raises(rr.CrossSlotError):
                await cc.execute("MGET", "a", "b")
            with pytest.raises(rr.CrossSlotError):
                await cc.mset({"a": 1, "b": 2})
            with pytest.raises(rr.CrossSlotError):
                tx = cc.pipeline(transaction=True)
                await tx.set("a", 1).set("b", 1).execute()
            assert cc.stats["crossslot_refused"] == 4
    run(main())
    for n in cluster.nodes:                      # nothing reached any server
        assert _cmdstat(n.port, "mget") == 0
        assert _cmdstat(n.port, "mset") == 0
        assert _cmdstat(n.port, "multi") == 0


# ---------------------------------------------------------------------------
# resharding: MOVED, ASK, TRYAGAIN


def test_resharded_slot_gives_ask_then_moved(cluster, seeds):
    key = "{reshard}k1"
    other = "{reshard}k2"                        # same slot, never written on the source
    slot = key_slot(key)
    src_port = _owner_port(cluster, key)
    src = next(n for n in cluster.nodes if n.port == src_port)
    dst = next(n for n in cluster.nodes if n.port != src_port)
    src_id, dst_id = cluster.node_id(src.port), cluster.node_id(dst.port)

    async def main():
        async with await rr.connect_cluster(seeds) as cc:
            assert await cc.set(key, "moving") is True
            assert await cc.set("{reshard}k3", "stays") is True
            assert sync_command(dst.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id) == b"OK"
            assert sync_command(src.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id) == b"OK"
            # a key the source does not have: ASK -> ASKING + GET on the target
            assert await cc.get(other) is None
            assert cc.stats["ask"] == 1
            # move the key itself
            assert sync_command(src.port, "MIGRATE", "127.0.0.1", dst.port, "", 0, 5000,
                                "KEYS", key) == b"OK"
            assert await cc.get(key) == b"moving"
            assert cc.stats["ask"] == 2
            # keys split between the nodes mid-migration: TRYAGAIN, retried, then raised
            with pytest.raises(rr.TryAgainError):
                await cc.mget(key, "{reshard}k3")
            assert cc.stats["tryagain"] == cc.max_redirects + 1
            assert sync_command(src.port, "MIGRATE", "127.0.0.1", dst.port, "", 0, 5000,
                                "KEYS", "{reshard}k3") == b"OK"
            # finish the move everywhere: the client's map is now stale -> MOVED
            for n in cluster.nodes:
                assert sync_command(n.port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id) == b"OK"
            moved_before = cc.stats["moved"]
            assert await cc.get(key) == b"moving"
            assert cc.stats["moved"] == moved_before + 1
            assert cc.node_for_slot(slot) == dst.address
            # the map was updated: no more redirects for this slot
            assert await cc.mget(key, "{reshard}k3") == [b"moving", b"stays"]
            assert cc.stats["moved"] == moved_before + 1
            await cc.refresh()
            assert cc.node_for_slot(slot) == dst.address
    run(main())
    cluster.wait_stable()


def test_redirect_limit(cluster, seeds):
    """A slot that bounces forever (MIGRATING on both sides) stops after
    max_redirects with the last redirect error."""
    key = "{loop}k"
    slot = key_slot(key)
    src_port = _owner_port(cluster, key)
    src = next(n for n in cluster.nodes if n.port == src_port)
    dst = next(n for n in cluster.nodes if n.port != src_port)
    src_id, dst_id = cluster.node_id(src.port), cluster.node_id(dst.port)

    async def main():
        async with await rr.connect_cluster(seeds, max_redirects=3) as cc:
            # the target thinks the slot belongs to the source: MOVED back
            sync_command(src.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            try:
                with pytest.raises((rr.MovedError, rr.AskError)):
                    await cc.get(key + "missing")
                assert cc.stats["ask"] + cc.stats["moved"] == 4
            finally:
                sync_command(src.port, "CLUSTER", "SETSLOT", slot, "STABLE")
            assert await cc.get(key) is None
    run(main())
    cluster.wait_stable()


# ---------------------------------------------------------------------------
# a stub node answering LOADING


async def _stub_node(answer):
    """An asyncio stub: every parsed command -> answer(args, port) bytes."""
    async def handle(reader, writer):
        parser = Parser()
        buf = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buf += data
            while buf:
                cmd, used = parser.parse(buf)
                buf = buf[used:]
                if cmd is NEED_MORE:
                    break
                writer.write(answer([bytes(a).upper() if i < 2 else bytes(a)
                                     for i, a in enumerate(cmd)], port))
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


def test_loading_is_retried():
    state = {"loading": 2}

    def answer(args, port):
        if args[:2] == [b"CLUSTER", b"SHARDS"]:
            return b"-ERR unknown subcommand\r\n"
        if args[:2] == [b"CLUSTER", b"SLOTS"]:
            return (b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$2\r\nid\r\n"
                    % port)
        if args[0] == b"GET":
            if state["loading"]:
                state["loading"] -= 1
                return b"-LOADING Redis is loading the dataset in memory\r\n"
            return b"$2\r\nok\r\n"
        return b"+OK\r\n"

    async def main():
        server, port = await _stub_node(answer)
        async with await rr.connect_cluster([("127.0.0.1", port)], retry_delay=0.01) as cc:
            assert await cc.get("x") == b"ok"
            assert cc.stats["loading"] == 2
            state["loading"] = 100
            with pytest.raises(rr.LoadingError):
                await cc.get("x")
        server.close()
    run(main())


# ---------------------------------------------------------------------------
# a node dies and comes back


def test_node_death_refreshes_the_map_and_recovers(cluster, seeds):
    victim = cluster.nodes[2]
    key_on_victim = next(f"dead:{i}" for i in range(1000)
                         if _owner_port(cluster, f"dead:{i}") == victim.port)
    key_elsewhere = next(f"alive:{i}" for i in range(1000)
                         if _owner_port(cluster, f"alive:{i}") != victim.port)

    async def main():
        async with await rr.connect_cluster(seeds, retry_delay=0.02) as cc:
            await cc.set(key_on_victim, "v1")
            await cc.set(key_elsewhere, "v2")
            refreshes = cc.stats["refreshes"]
            victim.stop()
            with pytest.raises(rr.RedisConnectionError):
                await cc.get(key_on_victim)
            assert cc.stats["refreshes"] > refreshes           # the map was reloaded
            assert cc.stats["connection_errors"] >= 1
            assert await cc.get(key_elsewhere) == b"v2"        # the rest keeps working
            victim.start()
            # the restarted node answers CLUSTERDOWN until gossip catches up;
            # the client retries that a few times per command, then raises
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                try:
                    assert await cc.set(key_on_victim, "back") is True
                    break
                except rr.ClusterDownError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.1)
            assert await cc.get(key_on_victim) == b"back"
    run(main(), timeout=30)
    cluster.wait_stable()
