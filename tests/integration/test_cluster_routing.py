"""Asks and tells between two nodes' actor systems through the router (pocho_rt/routing.py),
over real Redis and PostgreSQL: an actor runs only on the node serving its shard, whichever
node is asked; tells keep their order; and when the owner goes silent, asks retry until the
survivor takes the shard over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import asyncpg
import pytest
from redis.asyncio import Redis

from adapters.cluster import Membership, Postman, ShardLeases
from engine.errors import EngineError
from engine.runtime.actor import Actor, ActorSystem
from pocho_rt.cluster import ClusterNode, ClusterTiming
from pocho_rt.routing import Router
from tests.helpers import eventually

SHARDS = 8


class Tally(Actor):
    """A test actor: remembers what it was told and says which node runs it."""

    kind: ClassVar[str] = "tally"

    def __init__(self, actor_id: str, node: str) -> None:
        super().__init__(actor_id)
        self.node = node
        self.told: list[Any] = []

    async def handle(self, msg: Any) -> Any:
        if msg == "where":
            return {"node": self.node, "told": list(self.told)}
        self.told.append(msg)
        return None


class Node:
    def __init__(self, redis: Redis, pool: asyncpg.Pool, node_id: str, lease_ms: int) -> None:
        self.id = node_id
        self.system = ActorSystem(mailbox_size=100, idle_seconds=300, ask_timeout=5)
        self.system.register("tally", lambda key: Tally(key, node_id))
        timing = ClusterTiming(shards=SHARDS, node_lease_ms=lease_ms, shard_lease_ms=lease_ms, margin_ms=lease_ms // 4)
        self.cluster = ClusterNode(
            node_id,
            Membership(redis, node_id, lease_ms=lease_ms, address=node_id, started="now"),
            ShardLeases(redis, node_id, lease_ms=lease_ms, margin_ms=lease_ms // 4),
            pool,
            timing,
        )
        self.router: Router
        self.postman = Postman(redis, node_id, lambda *a: self.router.serve_remote(*a))
        self.router = Router(self.cluster, self.postman, self.system)
        self.system.placement = self.router
        self.tasks = [asyncio.ensure_future(self.postman.run()), asyncio.ensure_future(self.router.run_tells())]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.system.stop()


@pytest.fixture
async def pair(redis: Redis, pool: asyncpg.Pool) -> AsyncIterator[tuple[Node, Node]]:
    a, b = Node(redis, pool, "a", 400), Node(redis, pool, "b", 400)
    await a.postman.ready.wait()
    await b.postman.ready.wait()
    for _ in range(2):
        await a.cluster.round()
        await b.cluster.round()
    yield a, b
    await a.stop()
    await b.stop()


def keys_on(node: Node, n: int = 3) -> list[str]:
    return [k for k in (f"k{i}" for i in range(200)) if node.cluster.serves(node.cluster.shard("tally", k))][:n]


async def test_an_actor_runs_only_where_its_shard_is_served(pair: tuple[Node, Node]) -> None:
    a, b = pair
    for key in keys_on(b):
        assert (await a.system.ask("tally", key, "where"))["node"] == "b"
        assert (await b.system.ask("tally", key, "where"))["node"] == "b"
        assert a.system.get("tally", key) is None  # never activated on a
    for key in keys_on(a):
        assert (await b.system.ask("tally", key, "where"))["node"] == "a"
    assert a.postman.forwarded >= 3 and b.postman.received >= 3


async def test_tells_cross_in_order(pair: tuple[Node, Node]) -> None:
    a, b = pair
    key = keys_on(b, 1)[0]
    for i in range(50):
        a.system.tell("tally", key, i)

    async def all_arrived() -> bool:
        return len((await b.system.ask("tally", key, "where"))["told"]) >= 50

    await eventually(all_arrived, what="50 tells")
    reply = await b.system.ask("tally", key, "where")
    assert reply == {"node": "b", "told": list(range(50))}  # once each, in order, on the owner
    assert a.system.get("tally", key) is None


async def test_asks_wait_for_a_silent_owners_shards_to_be_taken_over(pair: tuple[Node, Node]) -> None:
    a, b = pair
    key = keys_on(b, 1)[0]
    await b.stop()  # b dies: no inbox, no more rounds, its leases run out
    with pytest.raises(EngineError) as moving:
        await a.system.ask("tally", key, "where", timeout=0.05)
    assert moving.value.code == "unavailable"

    async def a_rounds() -> None:
        while True:
            await a.cluster.round()
            await asyncio.sleep(0.05)

    rounds = asyncio.ensure_future(a_rounds())
    try:
        reply = await a.system.ask("tally", key, "where", timeout=10)  # retries until a holds it
        assert reply["node"] == "a"
    finally:
        rounds.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rounds


async def test_a_moving_shard_holds_up_only_its_own_tells(redis: Redis, pool: asyncpg.Pool) -> None:
    # Long leases and no rounds after the start: nothing moves but what the test moves.
    a, b = Node(redis, pool, "a", 60_000), Node(redis, pool, "b", 60_000)
    try:
        await a.postman.ready.wait()
        await b.postman.ready.wait()
        for _ in range(2):
            await a.cluster.round()
            await b.cluster.round()
        key = keys_on(b, 1)[0]
        stuck = next(f"s{i}" for i in range(10_000) if b.cluster.serves(b.cluster.shard("tally", f"s{i}")))
        shard = b.cluster.shard("tally", stuck)
        assert shard != b.cluster.shard("tally", key)
        b.cluster.epochs.pop(shard)
        await b.cluster.leases.release(shard)  # nobody holds it now: tells to it must wait
        a.system.tell("tally", stuck, "first")  # queued first, cannot leave yet
        for i in range(5):
            a.system.tell("tally", key, i)  # another shard's tells go out meanwhile

        async def arrived() -> bool:
            return len((await b.system.ask("tally", key, "where"))["told"]) == 5

        await eventually(arrived, what="the other shard's tells")
        assert a.router._tells.get(shard)  # the stuck one still waits for a holder
    finally:
        await a.stop()
        await b.stop()
