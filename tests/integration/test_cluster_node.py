"""Shard ownership across nodes (pocho_rt/cluster.py) against real Redis and PostgreSQL, with
rounds driven by hand: every shard held by exactly one node, joins move shards only to the
newcomer after the old owner released them, a silent node's shards are taken over under a
larger epoch, and a paused node learns it lost its shards and stops serving them."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from redis.asyncio import Redis

from adapters.cluster import Membership, ShardLeases
from engine.errors import EngineError
from engine.runtime.placement import shards_for
from persistence import shards as shards_db
from persistence.writer import Statement, Writer
from pocho_rt.cluster import ClusterNode, ClusterTiming
from tests.helpers import eventually

SHARDS = 16


class Node:
    def __init__(self, redis: Redis, pool: asyncpg.Pool, node_id: str, lease_ms: int = 5000) -> None:
        timing = ClusterTiming(shards=SHARDS, node_lease_ms=lease_ms, shard_lease_ms=lease_ms, margin_ms=lease_ms // 4)
        self.log: list[tuple[str, int]] = []
        self.node = ClusterNode(
            node_id,
            Membership(redis, node_id, lease_ms=lease_ms, address=node_id, started="now"),
            ShardLeases(redis, node_id, lease_ms=lease_ms, margin_ms=lease_ms // 4),
            pool,
            timing,
            on_acquire=self._acquired,
            on_release=self._released,
        )

    async def _acquired(self, shard: int) -> None:
        self.log.append(("acquire", shard))

    async def _released(self, shard: int) -> None:
        self.log.append(("release", shard))


async def rounds(*nodes: Node, times: int = 2) -> None:
    for _ in range(times):
        for n in nodes:
            await n.node.round()


def assert_partition(*nodes: Node) -> None:
    held = [set(n.node.held()) for n in nodes]
    assert set().union(*held) == set(range(SHARDS))
    assert sum(len(h) for h in held) == SHARDS  # no shard on two nodes


async def test_two_nodes_split_the_shards_as_planned(redis: Redis, pool: asyncpg.Pool) -> None:
    a, b = Node(redis, pool, "a"), Node(redis, pool, "b")
    await rounds(a, b)
    assert_partition(a, b)
    assert set(a.node.held()) == shards_for("a", ["a", "b"], SHARDS)
    assert a.node.settled.is_set() and b.node.settled.is_set()
    owners = await shards_db.owners(pool)
    for n in (a, b):
        for s in n.node.held():
            assert owners[s] == (n.node.node_id, n.node.epochs[s]) and n.node.serves(s)
            assert n.node.epoch_of(s) == n.node.epochs[s]
    assert all(a.node.epoch_of(s) is None for s in b.node.held())


async def test_a_joining_node_takes_only_its_share_after_the_owner_let_go(redis: Redis, pool: asyncpg.Pool) -> None:
    a, b = Node(redis, pool, "a"), Node(redis, pool, "b")
    await rounds(a, b)
    before = {s: "a" for s in a.node.held()} | {s: "b" for s in b.node.held()}
    c = Node(redis, pool, "c")
    await rounds(c, a, b, c, times=2)
    assert_partition(a, b, c)
    assert set(c.node.held()) == shards_for("c", ["a", "b", "c"], SHARDS) != set()
    for s in c.node.held():
        old = a if before[s] == "a" else b
        assert ("release", s) in old.log  # flushed and passivated by its old owner first
    moved = {s for s in range(SHARDS) if s not in c.node.held()}
    assert all(before[s] == ("a" if s in a.node.held() else "b") for s in moved)  # nothing else moved


async def test_a_silent_nodes_shards_are_taken_over_with_larger_epochs(redis: Redis, pool: asyncpg.Pool) -> None:
    a, b = Node(redis, pool, "a", lease_ms=400), Node(redis, pool, "b", lease_ms=400)
    await rounds(a, b)
    b_shards, b_epochs = set(b.node.held()), dict(b.node.epochs)

    async def a_holds_everything() -> bool:  # b is "killed": it runs no more rounds
        await a.node.round()
        return set(a.node.held()) == set(range(SHARDS))

    await eventually(a_holds_everything, what="a to take b's shards once b's leases ran out")
    assert all(a.node.epochs[s] > b_epochs[s] for s in b_shards)
    assert ("acquire", next(iter(b_shards))) in a.log  # deadlines re-armed on takeover


async def test_a_paused_node_learns_it_lost_its_shards(redis: Redis, pool: asyncpg.Pool) -> None:
    a, b = Node(redis, pool, "a", lease_ms=400), Node(redis, pool, "b", lease_ms=400)
    await rounds(a, b)
    b_shards = set(b.node.held())
    # b pauses (no rounds) past its leases: it must stop serving at its local deadline ...
    await eventually(lambda: not any(b.node.serves(s) for s in b_shards), what="b's serving deadline")

    async def a_took_over() -> bool:
        await a.node.round()
        return b_shards <= set(a.node.held())

    await eventually(a_took_over, what="a to take b's shards")
    # ... and when it wakes up, its first round tells it they are gone.
    await b.node.round()
    assert not set(b.node.held()) & b_shards and not any(b.node.serves(s) for s in b_shards)
    assert all(("release", s) in b.log for s in b_shards)
    owners = await shards_db.owners(pool)
    assert all(owners[s][0] == "a" for s in b_shards)


async def test_leaving_hands_everything_over(redis: Redis, pool: asyncpg.Pool) -> None:
    a, b = Node(redis, pool, "a"), Node(redis, pool, "b")
    await rounds(a, b)
    await b.node.leave()
    assert b.node.held() == []
    await rounds(a)
    assert set(a.node.held()) == set(range(SHARDS))


async def test_a_write_under_a_stale_epoch_is_refused_alone_and_the_node_stops_serving(
    redis: Redis, pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    a, b = Node(redis, pool, "a", lease_ms=400), Node(redis, pool, "b", lease_ms=400)
    await rounds(a, b)
    key_a = next(k for k in (f"r{i}" for i in range(500)) if a.node.serves(a.node.shard("meal_request", k)))
    key_b = next(k for k in (f"r{i}" for i in range(500)) if b.node.serves(b.node.shard("meal_request", k)))
    shard_b = b.node.shard("meal_request", key_b)
    stale_rows = b.node.rows("meal_request", key_b)  # b's fence, taken while b still owned the shard
    with pytest.raises(EngineError) as refused:  # a never writes for a shard it does not serve
        a.node.rows("meal_request", key_b)
    assert refused.value.code == "unavailable"

    async def a_took_over() -> bool:  # b pauses; its lease runs out and a takes the shard
        await a.node.round()
        return shard_b in a.node.held()

    await eventually(a_took_over, what="a to take b's shard")
    await db.execute("CREATE TABLE fence_t (k text)")
    writer = Writer(pool, flush_ms=20)
    task = asyncio.ensure_future(writer.run())
    try:
        # One group: b's stale write and a's current one. Only b's is refused.
        stale = writer.submit([*stale_rows, (_INSERT, (key_b,))])
        b.node.watch(stale)
        fresh = writer.submit([*a.node.rows("meal_request", key_a), (_INSERT, (key_a,))])
        await fresh
        with pytest.raises(EngineError) as fenced:  # `unavailable`: not written, the client retries
            await stale
        assert fenced.value.code == "unavailable"
        assert shards_db.stale_shard(fenced.value) == shard_b
        assert [r["k"] for r in await db.fetch("SELECT k FROM fence_t")] == [key_a]
        assert not b.node.serves(shard_b) and shard_b not in b.node.held()  # b stopped at once
        await b.node.round()
        assert ("release", shard_b) in b.log  # and its next round passivated the shard's actors
    finally:
        await writer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.execute("DROP TABLE fence_t")


_INSERT = Statement("fence_t", "INSERT INTO fence_t (k) VALUES ($1)", 10)
