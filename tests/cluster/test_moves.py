"""Shards moving under load (issue 9): a node paused past its lease gives its shards up, and a
node joining a busy cluster takes its share, with no acked command lost or failed."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import aiohttp
import asyncpg

from engine.meal_request_actor import MEAL_REQUEST_KIND
from engine.runtime.placement import shards_for
from scripts.sio_lite import LiteClient
from tests.cluster.conftest import admin_get, connected, holders, owner, people, start_all, until_ok
from tests.e2e.util import request_payload
from tests.helpers import eventually
from tests.nodes import Node

# Short leases keep these tests quick; the kill test measures the defaults.
FAST = {
    "POCHO_CLUSTER_NODE_LEASE_MS": "2000",
    "POCHO_CLUSTER_SHARD_LEASE_MS": "2000",
    "POCHO_CLUSTER_MARGIN_MS": "500",
}


async def _requests(customer: LiteClient, vendor: LiteClient, count: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        req = (await until_ok(customer, "request:create", request_payload(expiresInMinutes=120)))[0]
        rid = req["request"]["id"]
        offer = (await until_ok(vendor, "offer:place", {"requestId": rid, "priceKobo": 300_000}))[0]
        out.append((rid, offer["offer"]["id"]))
    return out


async def _live_once(*nodes: Node) -> None:
    """No actor is in memory on two nodes at once."""
    seen: Counter[tuple[str, str]] = Counter()
    for node in nodes:
        for a in (await admin_get(node, "/admin/actors?limit=1000"))["actors"]:
            seen[(a["kind"], a["id"], a["node"])] += 1
    per_key = Counter((kind, key) for kind, key, _ in seen)
    assert all(n == 1 for n in per_key.values()), per_key


class _Load:
    """A vendor revising every offer in turn until stopped, recording each acked price."""

    def __init__(self, vendor: LiteClient, offers: list[str]) -> None:
        self.vendor = vendor
        self.offers = offers
        self.acked: dict[str, list[int]] = {o: [] for o in offers}
        self.retries = 0
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        price = 290_000
        while not self._stop.is_set():
            for oid in self.offers:
                price -= 1
                data, retries = await until_ok(self.vendor, "offer:revise", {"offerId": oid, "priceKobo": price})
                assert data["offer"]["priceKobo"] == price
                self.acked[oid].append(price)
                self.retries += retries

    def rounds(self) -> int:
        return min(len(v) for v in self.acked.values())

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 60)  # raises what failed inside


async def _nothing_lost(db: asyncpg.Connection, load: _Load) -> None:
    for oid, prices in load.acked.items():
        stored = await db.fetchval("SELECT price_kobo FROM offers WHERE id = $1", uuid.UUID(oid))
        assert stored == prices[-1]
        logged = [
            r["p"]
            for r in await db.fetch(
                "SELECT (e.payload->'offer'->>'priceKobo')::bigint AS p FROM negotiation_events e "
                "JOIN offers o ON o.request_id = e.request_id "
                "WHERE o.id = $1 AND e.kind = 'offer:updated' ORDER BY e.seq",
                uuid.UUID(oid),
            )
        ]
        assert logged == prices  # every acked revision, once, in order


async def test_a_joining_node_takes_its_share_with_no_acked_command_lost(cluster: Any, db: asyncpg.Connection) -> None:
    ppl = await people(db, customers=1)
    n1, n2 = cluster(**FAST), cluster(**FAST)
    await start_all(n1, n2)
    async with aiohttp.ClientSession() as s:
        customer = await connected(s, n1, "/customer", ppl.customers[0])
        vendor = await connected(s, n2, "/vendor", ppl.vendor)
        pairs = await _requests(customer, vendor, 10)
        load = _Load(vendor, [o for _, o in pairs])
        await eventually(lambda: load.rounds() >= 2, timeout=30, what="the load to get going")

        n3 = cluster(**FAST)
        await n3.start()  # ready: it holds every shard it should, handed over by n1 and n2
        share = shards_for("n3", ["n1", "n2", "n3"], 256)
        after = await holders(n1)
        assert {s for s, n in after.items() if n == "n3"} == share
        before = load.rounds()
        await eventually(lambda: load.rounds() >= before + 2, timeout=30, what="the load to go on after the join")
        await _live_once(n1, n2, n3)
        await load.stop()

        # Commands kept working through the moves (at most retried), and every ack is stored.
        await _nothing_lost(db, load)
        moved = [rid for rid, _ in pairs if owner(after, MEAL_REQUEST_KIND, rid) == "n3"]
        for rid in moved:  # the requests now on n3 answer with what n1/n2 acked
            snap, _ = await until_ok(customer, "request:watch", {"requestId": rid})
            assert snap["request"]["id"] == rid
        await customer.close()
        await vendor.close()


async def test_a_paused_node_gives_its_shards_up_and_clients_only_retry(cluster: Any, db: asyncpg.Connection) -> None:
    ppl = await people(db, customers=1)
    n1, n2 = cluster(**FAST), cluster(**FAST)
    await start_all(n1, n2)
    holding = await holders(n1)
    async with aiohttp.ClientSession() as s:
        customer = await connected(s, n1, "/customer", ppl.customers[0])
        vendor = await connected(s, n1, "/vendor", ppl.vendor)
        pairs = await _requests(customer, vendor, 10)
        assert any(owner(holding, MEAL_REQUEST_KIND, rid) == "n2" for rid, _ in pairs)
        load = _Load(vendor, [o for _, o in pairs])
        await eventually(lambda: load.rounds() >= 2, timeout=30, what="the load to get going")

        n2.pause()  # past its leases: n1 takes every shard while n2 cannot run at all
        try:

            async def n1_holds_all() -> bool:
                return set((await holders(n1)).values()) == {"n1"}

            await eventually(n1_holds_all, timeout=30, what="n1 to take the paused node's shards")
            before = load.rounds()
            await eventually(lambda: load.rounds() >= before + 2, timeout=30, what="the load to go on on n1")
        finally:
            n2.resume()

        # n2 wakes up believing nothing: its serving deadlines passed while it was stopped, so it
        # writes nothing for those shards; it rejoins and takes its share back from n1.
        async def rebalanced() -> bool:
            return {s for s, n in (await holders(n1)).items() if n == "n2"} == shards_for("n2", ["n1", "n2"], 256)

        await eventually(rebalanced, timeout=30, what="n2 to rejoin and take its share back")
        before = load.rounds()
        await eventually(lambda: load.rounds() >= before + 2, timeout=30, what="the load to go on after n2 rejoined")
        await _live_once(n1, n2)
        await load.stop()
        await _nothing_lost(db, load)
        await customer.close()
        await vendor.close()
