"""Membership and shard leases against a real Redis (adapters/cluster.py): the live set,
expiry by Redis's clock, exclusive shard leases, compare-and-set renewal and release, and
the local serving deadline that ends before the lease can pass to another node."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from adapters.cluster import SHARD, Membership, ShardLeases
from tests.helpers import eventually


def member(redis: Redis, node: str, lease_ms: int = 5000) -> Membership:
    return Membership(redis, node, lease_ms=lease_ms, address=f"{node}:8080", started="2026-11-29T00:00:00Z")


async def test_live_set_holds_nodes_whose_lease_runs(redis: Redis) -> None:
    a, b = member(redis, "a"), member(redis, "b", lease_ms=150)
    assert await a.heartbeat() == ["a"]
    assert await b.heartbeat() == ["a", "b"]
    assert [(n.node_id, n.address) for n in await a.nodes()] == [("a", "a:8080"), ("b", "b:8080")]
    # b stops renewing: its lease runs out by Redis's clock and a no longer counts it.
    await eventually(lambda: _live(a, ["a"]), what="b's lease to run out")
    assert [n.node_id for n in await a.nodes()] == ["a"]


async def _live(m: Membership, expected: list[str]) -> bool:
    return await m.heartbeat() == expected


async def test_leaving_drops_out_at_once(redis: Redis) -> None:
    a, b = member(redis, "a"), member(redis, "b")
    await a.heartbeat()
    await b.heartbeat()
    await b.leave()
    assert await a.heartbeat() == ["a"]


async def test_a_shard_lease_is_exclusive_until_released(redis: Redis) -> None:
    a = ShardLeases(redis, "a", lease_ms=5000, margin_ms=1000)
    b = ShardLeases(redis, "b", lease_ms=5000, margin_ms=1000)
    assert await a.acquire(3) and a.valid(3)
    assert not await b.acquire(3) and not b.valid(3)
    assert await a.acquire(3)  # taking one's own shard again is fine
    assert await b.holder(3) == "a" and await b.holders(8) == {3: "a"}
    await b.release(3)  # not b's: nothing happens
    assert await a.holder(3) == "a"
    await a.release(3)
    assert not a.valid(3) and await a.holder(3) is None
    assert await b.acquire(3) and await a.holders(8) == {3: "b"}


async def test_renewal_keeps_own_leases_and_reports_lost_ones(redis: Redis) -> None:
    a = ShardLeases(redis, "a", lease_ms=5000, margin_ms=1000)
    assert await a.acquire(1) and await a.acquire(2)
    before = a.valid_until[1]
    assert await a.renew() == set()
    assert a.valid_until[1] >= before
    # Shard 2's lease passes to b behind a's back (as after a pause longer than the lease).
    await redis.set(SHARD + "2", "b", px=5000)
    assert await a.renew() == {2}
    assert a.valid(1) and not a.valid(2) and set(a.valid_until) == {1}
    assert await a.holder(2) == "b"  # a's renewal did not extend b's lease


async def test_serving_deadline_ends_before_the_lease_does(redis: Redis) -> None:
    leases = ShardLeases(redis, "a", lease_ms=400, margin_ms=100)
    sent = time.monotonic()
    assert await leases.acquire(5)
    assert leases.valid_until[5] <= sent + 0.3 + 0.05  # counted from before the SET was sent
    assert not leases.valid(5, now=leases.valid_until[5])
    ttl = await redis.pttl(SHARD + "5")
    assert 0 < ttl <= 400
    with pytest.raises(ValueError):
        ShardLeases(redis, "a", lease_ms=100, margin_ms=100)
