"""Three real nodes over one PostgreSQL and one Redis (issue 9): what one node acks, any node
serves; a node killed with SIGKILL mid-negotiation loses nothing acked, and every request and
order it owned answers again once its leases ran out (default lease settings)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from engine.assignment import ORDER_KIND
from engine.meal_request_actor import MEAL_REQUEST_KIND
from scripts.sio_lite import LiteClient
from tests.cluster.conftest import admin_get, connected, holders, owner, people, start_all, until_ok
from tests.e2e.util import request_payload
from tests.helpers import eventually

REVISIONS = 3


def _collect(client: LiteClient, event: str) -> list[Any]:
    got: list[Any] = []
    client.handlers[event] = got.append
    return got


async def test_kill9_loses_nothing_acked_and_the_dead_nodes_items_answer_again(
    cluster: Any, db: asyncpg.Connection
) -> None:
    ppl = await people(db, customers=4, vendors=2)
    n1, n2, n3 = cluster(), cluster(), cluster()
    await start_all(n1, n2, n3)
    holding = await holders(n1)
    assert set(holding.values()) == {"n1", "n2", "n3"}  # every shard held, by the three of them

    async with aiohttp.ClientSession() as s:
        customers = [await connected(s, n1, "/customer", t) for t in ppl.customers]
        vendor = await connected(s, n2, "/vendor", ppl.vendor)
        new_requests = _collect(vendor, "request:new")
        new_offers = [_collect(c, "offer:new") for c in customers]

        # Requests from customers on n1, offers from a vendor on n2; keep going until n3 owns
        # some of them (placement is a hash: which node owns what is not chosen by the test).
        reqs: list[tuple[int, str, str]] = []  # (customer, request id, offer id)
        for i in range(40):
            cust = i % len(customers)
            req = (await until_ok(customers[cust], "request:create", request_payload(expiresInMinutes=120)))[0]
            rid = req["request"]["id"]
            placed = (await until_ok(vendor, "offer:place", {"requestId": rid, "priceKobo": 300_000}))[0]
            reqs.append((cust, rid, placed["offer"]["id"]))
            on_n3 = [r for r in reqs if owner(holding, MEAL_REQUEST_KIND, r[1]) == "n3"]
            if len(reqs) >= 12 and len(on_n3) >= 4:
                break
        assert len(on_n3) >= 4

        # Rooms span nodes: the vendor on n2 heard of every request made on n1, each customer
        # on n1 of every offer made on n2, wherever the request's actor lives.
        await eventually(lambda: len(new_requests) == len(reqs), what="request:new on the vendor's node")
        assert sorted(e["request"]["id"] for e in new_requests) == sorted(r[1] for r in reqs)
        await eventually(lambda: sum(map(len, new_offers)) == len(reqs), what="offer:new on the customers' node")
        for cust, rid, _ in reqs:
            assert rid in [e["offer"]["requestId"] for e in new_offers[cust]]

        price: dict[str, int] = {}
        for _, _, oid in reqs:
            for k in range(REVISIONS):
                data, _ = await until_ok(vendor, "offer:revise", {"offerId": oid, "priceKobo": 290_000 - k})
                price[oid] = data["offer"]["priceKobo"]
        # One live actor per request, wherever asked from: the customers' node sees every price
        # the vendor's node acked (with a live actor per node it saw older ones).
        for cust, rid, oid in reqs:
            snap, _ = await until_ok(customers[cust], "request:watch", {"requestId": rid})
            assert [o["priceKobo"] for o in snap["offers"]] == [price[oid]]

        # Presence counts viewers on every node: two vendors, on n2 and n3, view one request
        # whose customer is on n1.
        cust, rid, _ = reqs[0]
        views = _collect(customers[cust], "presence")
        other = await connected(s, n3, "/vendor", ppl.vendors[1])
        await until_ok(vendor, "request:watch", {"requestId": rid})
        await eventually(lambda: [p["vendorsViewing"] for p in views] == [1], what="presence from n2")
        await until_ok(other, "request:watch", {"requestId": rid})
        await eventually(lambda: [p["vendorsViewing"] for p in views] == [1, 2], what="presence from n3")
        snap, _ = await until_ok(customers[cust], "request:watch", {"requestId": rid})
        assert snap["vendorsViewing"] == 2

        # Two of n3's requests become orders; one of those is then cancelled: both statuses acked.
        orders: dict[str, tuple[int, str]] = {}  # order id -> (customer, acked status)
        for cust, _, oid in on_n3[:2]:
            data, _ = await until_ok(customers[cust], "offer:accept", {"offerId": oid})
            orders[data["order"]["id"]] = (cust, data["order"]["status"])
        cancelled = next(iter(orders))
        cust0 = orders[cancelled][0]
        data, _ = await until_ok(customers[cust0], "order:cancel", {"orderId": cancelled, "reason": "changed my mind"})
        orders[cancelled] = (cust0, data["order"]["status"])
        assert orders[cancelled][1] == "CANCELED"
        open_reqs = [r for r in reqs if r not in on_n3[:2]]

        # Kill n3 with everything above acked. Its items must answer again on n1 and n2.
        n3.kill()
        killed_at = time.monotonic()

        async def request_back(cust: int, rid: str, oid: str) -> float:
            snap, _ = await until_ok(customers[cust], "request:watch", {"requestId": rid})
            assert [o["priceKobo"] for o in snap["offers"]] == [price[oid]]  # the last acked revision
            data, _ = await until_ok(vendor, "offer:revise", {"offerId": oid, "priceKobo": price[oid] - 1})
            assert data["offer"]["priceKobo"] == price[oid] - 1
            return time.monotonic() - killed_at

        async def order_back(order_id: str) -> float:
            cust, status = orders[order_id]
            snap, _ = await until_ok(customers[cust], "order:watch", {"orderId": order_id})
            assert snap["order"]["status"] == status
            return time.monotonic() - killed_at

        answered = await asyncio.gather(
            *(request_back(c, r, o) for c, r, o in open_reqs), *(order_back(oid) for oid in orders)
        )
        print(f"\nkill -9 of n3: all of its items answered again {max(answered):.1f} s after the kill")

        # Nothing acked was lost, on any node's items; n3's shards now live on n1 and n2.
        for _, _, oid in open_reqs:
            stored = await db.fetchval("SELECT price_kobo FROM offers WHERE id = $1", uuid.UUID(oid))
            assert stored == price[oid] - 1
        for order_id, (_, status) in orders.items():
            assert await db.fetchval("SELECT status FROM orders WHERE id = $1", uuid.UUID(order_id)) == status
        after = await holders(n1)
        assert set(after.values()) == {"n1", "n2"}
        assert owner(after, ORDER_KIND, cancelled) in {"n1", "n2"}
        nodes = {n["id"] for n in (await admin_get(n2, "/admin/nodes"))["nodes"]}
        assert nodes == {"n1", "n2"}
        for c in (*customers, vendor, other):
            await c.close()
