"""ringline._util.ketama: libmemcached-compatible ketama, checked against uhashring."""
import random

import pytest

from ringline._util.ketama import Ketama

uhashring = pytest.importorskip("uhashring")

N_KEYS = 10_000


def _keys(seed):
    rng = random.Random(seed)
    return [f"key:{rng.getrandbits(48):x}:{i}" for i in range(N_KEYS)]


def _assert_matches(nodes, seed):
    ours = Ketama(nodes)
    ref = uhashring.HashRing(nodes, hash_fn="ketama")
    mismatches = [k for k in _keys(seed)
                  if ours.node_for(k) != ref.get_node(k)]
    assert not mismatches, f"{len(mismatches)} of {N_KEYS} keys differ, e.g. {mismatches[:3]}"
    # the continuum itself is the same set of points
    assert sorted(set(p for p, _ in ours.points())) == sorted(set(ref.runtime._keys))


def test_three_weighted_nodes_match_uhashring():
    _assert_matches({"10.0.0.1:11211": 1, "10.0.0.2:11211": 2, "10.0.0.3:11211": 5}, 1)


def test_eight_weighted_nodes_match_uhashring():
    nodes = {f"cache-{i}.example:{11211 + i}": w
             for i, w in enumerate([1, 3, 2, 7, 1, 4, 10, 2])}
    _assert_matches(nodes, 2)


def test_unweighted_list_matches_uhashring_and_has_160_points_each():
    names = [f"127.0.0.1:{20000 + i}" for i in range(5)]
    _assert_matches(names, 3)
    assert len(Ketama(names).points()) == 160 * 5


def test_bytes_and_str_keys_agree():
    ring = Ketama({"a": 1, "b": 2, "c": 3})
    for k in _keys(4)[:500]:
        assert ring.node_for(k) == ring.node_for(k.encode())
        assert ring.node_for(k) == ring.node_for(memoryview(k.encode()))


def test_add_and_remove_match_uhashring_and_move_few_keys():
    nodes = {"a:1": 1, "b:1": 2, "c:1": 1}
    ring = Ketama(nodes)
    keys = _keys(5)
    before = {k: ring.node_for(k) for k in keys}
    ring.add("d:1", 2)
    ref = uhashring.HashRing({**nodes, "d:1": 2}, hash_fn="ketama")
    assert all(ring.node_for(k) == ref.get_node(k) for k in keys)
    ring.remove("d:1")
    assert {k: ring.node_for(k) for k in keys} == before
    ring.remove("b:1")
    moved = sum(1 for k in keys if before[k] != "b:1" and ring.node_for(k) != before[k])
    # keys not on the removed node mostly stay put (weights are renormalised)
    assert moved < N_KEYS * 0.35
    assert "b:1" not in ring and len(ring) == 2


def test_hash_is_libmemcached_md5_little_endian():
    # md5("foo") = acbd18db..., first four bytes little-endian
    assert Ketama.hash(b"foo") == 0xdb18bdac
    assert Ketama.hash("foo") == 0xdb18bdac


def test_bad_input():
    with pytest.raises(LookupError):
        Ketama([]).node_for(b"x")
    with pytest.raises(ValueError):
        Ketama({"a": 0})
    with pytest.raises(TypeError):
        Ketama([""])
    with pytest.raises(KeyError):
        Ketama(["a"]).remove("b")
