"""Membership and shard leases against a real Redis (adapters/cluster.py): the live set,
expiry by Redis's clock, exclusive shard leases, compare-and-set renewal and release, and
the local serving deadline that ends before the lease can pass to another node."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.cluster import SHARD, Membership, NotDelivered, Postman, ShardLeases
from engine.assignment import Carrying, Reserve
from engine.errors import DomainError, EngineError
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


# ---------------------------------------------------------------- asks and tells between nodes


class _Node:
    """A postman whose handler is a tiny actor table: enough to see what crossed."""

    def __init__(self, redis: Redis, node_id: str) -> None:
        self.seen: list[tuple[str, str, Any, bool]] = []
        self.hold = asyncio.Event()
        self.postman = Postman(redis, node_id, self.handle)
        self.task = asyncio.ensure_future(self.postman.run())

    async def handle(self, kind: str, key: str, msg: Any, wants_reply: bool) -> Any:
        self.seen.append((kind, key, msg, wants_reply))
        if key == "refuses":
            raise DomainError("conflict", "offer is not open", {"status": "WITHDRAWN"})
        if key == "slow":
            await self.hold.wait()
        if key == "broken":
            raise RuntimeError("bug")
        return {"kind": kind, "key": key, "echo": msg}

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def nodes(redis: Redis) -> AsyncIterator[tuple[_Node, _Node]]:
    a, b = _Node(redis, "a"), _Node(redis, "b")
    await a.postman.ready.wait()
    await b.postman.ready.wait()
    yield a, b
    await a.stop()
    await b.stop()


async def test_an_ask_runs_on_the_other_node_and_its_reply_comes_back(nodes: tuple[_Node, _Node]) -> None:
    a, b = nodes
    msg = Carrying("order-1", 6.5, 3.4)
    assert await a.postman.ask("b", "rider", "r1", msg, timeout=5) == {"kind": "rider", "key": "r1", "echo": msg}
    assert b.seen == [("rider", "r1", msg, True)] and a.seen == []
    assert a.postman.forwarded == 1 and b.postman.received == 1


async def test_errors_come_back_as_the_same_error(nodes: tuple[_Node, _Node]) -> None:
    a, _ = nodes
    with pytest.raises(DomainError) as refused:
        await a.postman.ask("b", "order", "refuses", None, timeout=5)
    assert (refused.value.code, refused.value.details) == ("conflict", {"status": "WITHDRAWN"})
    with pytest.raises(EngineError) as broken:
        await a.postman.ask("b", "order", "broken", None, timeout=5)
    assert broken.value.code == "internal"


async def test_a_slow_owner_is_a_timeout_and_its_late_reply_is_dropped(nodes: tuple[_Node, _Node]) -> None:
    a, b = nodes
    with pytest.raises(EngineError) as late:
        await a.postman.ask("b", "order", "slow", None, timeout=0.2)
    assert late.value.code == "timeout"
    b.hold.set()
    await eventually(lambda: not b.postman._tasks, what="b to publish its late reply")
    assert await a.postman.ask("b", "order", "o2", 1, timeout=5) == {"kind": "order", "key": "o2", "echo": 1}


async def test_tells_arrive_without_replies(nodes: tuple[_Node, _Node]) -> None:
    a, b = nodes
    await a.postman.tell("b", "rider", "r1", Reserve("order-1"))
    await eventually(lambda: bool(b.seen), what="the tell")
    assert b.seen == [("rider", "r1", Reserve("order-1"), False)] and a.seen == []  # no reply was asked for


async def test_a_node_nobody_listens_for_fails_at_once(nodes: tuple[_Node, _Node]) -> None:
    a, _ = nodes
    with pytest.raises(NotDelivered):
        await a.postman.ask("gone", "order", "o1", None, timeout=5)
    with pytest.raises(NotDelivered):
        await a.postman.tell("gone", "order", "o1", None)
