"""Dispatch and delivery over real Socket.IO clients, with the rider side's actors: the offer
cascade (first rider declines, second times out, third accepts), a late accept is `conflict`,
the rider never sees the delivery code, DELIVERED needs it (five wrong codes lock it), the
rating reaches the vendor object, and a rider going offline or a cancel moves dispatch on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import Server, StartServer
from tests.e2e.util import LAGOS, Party, accepted_order, customer, rider, rider_id, vendor
from tests.helpers import Client, eventually

OFFER_SECONDS = 2.0  # short, so the second rider's offer times out within the test; long enough to answer


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server(assignment_offer_seconds=OFFER_SECONDS)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        c = Client(session, server)
        try:
            yield c
        finally:
            await c.close()


def near(km: float) -> dict[str, float]:
    """A point `km` north of the vendor (1 degree of latitude is ~111 km)."""
    return {"lat": LAGOS[0] + km / 111.2, "lng": LAGOS[1]}


async def available(server: Server) -> set[str]:
    return {c.rider_id for c in await server.svc.riders.available_near(LAGOS[0], LAGOS[1], 20.0, 50)}


def ping(p: dict[str, float]) -> dict[str, Any]:
    return {**p, "recordedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


async def deliver_ready(server: Server, vend: Party, oid: str, carrier: Party) -> None:
    """Paid order offered to `carrier` (the only rider around), accepted, cooked, on its way."""
    offer = carrier.next("assignment:offer")
    await server.svc.orders.confirm_payment(oid)
    assert (await offer)["orderId"] == oid
    await carrier.ok("assignment:accept", {"orderId": oid})
    await vend.ok("order:update", {"orderId": oid, "status": "PREPARING"})
    await vend.ok("order:update", {"orderId": oid, "status": "READY"})
    await carrier.ok("order:update", {"orderId": oid, "status": "PICKED_UP"})
    await carrier.ok("order:update", {"orderId": oid, "status": "OUT_FOR_DELIVERY"})


async def test_offer_cascade_then_delivery_with_the_code_and_a_rating(
    client: Client, server: Server, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db, name="Mama Put")
    a = await rider(client, **near(0.5))
    b = await rider(client, **near(1.0))
    c = await rider(client, **near(2.0))
    order = await accepted_order(cust, vend)
    oid = order["id"]

    offer_a = a.next("assignment:offer")
    await server.svc.orders.confirm_payment(oid)
    first = await offer_a  # the nearest rider first
    assert first["orderId"] == oid and first["pickup"]["name"] == "Mama Put"
    assert first["dropoff"] == {"lat": order["deliveryLat"], "lng": order["deliveryLng"]}
    assert first["feeKobo"] > 0 and first["expiresAt"].endswith("Z")

    offer_b = b.next("assignment:offer")
    assert await a.ok("assignment:decline", {"orderId": oid}) == {"orderId": oid}
    assert (await offer_b)["orderId"] == oid  # declined: the next nearest

    revoked_b, offer_c = b.next("assignment:revoked"), c.next("assignment:offer")
    assert (await revoked_b) == {"orderId": oid}  # b never answers: its offer times out
    assert (await offer_c)["orderId"] == oid

    accepted = await c.ok("assignment:accept", {"orderId": oid, "clientMsgId": "take-1"})
    assert await a.err("assignment:accept", {"orderId": oid}) == "conflict"  # declined earlier
    assert await b.err("assignment:accept", {"orderId": oid}) == "conflict"  # timed out, and taken
    assert accepted["order"]["riderId"] == rider_id(c) and "deliveryCode" not in accepted["order"]
    assert await c.ok("assignment:accept", {"orderId": oid, "clientMsgId": "take-1"}) == accepted
    assigned = (await cust.nth("order:status", 2))[1]
    assert assigned["event"]["kind"] == "rider_assigned" and assigned["event"]["riderId"] == rider_id(c)
    code = assigned["order"]["deliveryCode"]
    assert len(a.events["assignment:offer"]) == 1 and len(b.events["assignment:offer"]) == 1
    await eventually(lambda: _not_available(server, rider_id(c)), what="the carrying rider to leave the index")

    await vend.ok("order:update", {"orderId": oid, "status": "PREPARING"})
    await vend.ok("order:update", {"orderId": oid, "status": "READY"})
    assert await a.err("order:update", {"orderId": oid, "status": "PICKED_UP"}) == "forbidden"
    await c.ok("order:update", {"orderId": oid, "status": "PICKED_UP"})
    out = await c.ok("order:update", {"orderId": oid, "status": "OUT_FOR_DELIVERY"})
    assert out["order"]["etaMinutes"] >= 1

    # The customer follows the rider on the map.
    cust.listen("rider:location")
    await cust.ok("order:watch", {"orderId": oid})
    moved = cust.next("rider:location")
    await c.ok("location", ping(near(2.0)))  # where it went online: no jump to filter
    loc = await moved
    assert loc["orderId"] == oid and loc["etaMinutes"] >= 1
    watched = await cust.ok("order:watch", {"orderId": oid})
    assert watched["riderLocation"] is not None and watched["riderLocation"]["orderId"] == oid

    wrong = "000000" if code != "000000" else "111111"
    assert await c.err("order:update", {"orderId": oid, "status": "DELIVERED", "deliveryCode": wrong}) == "forbidden"
    done = await c.ok("order:update", {"orderId": oid, "status": "DELIVERED", "deliveryCode": code})
    assert done["order"]["status"] == "DELIVERED"
    heard = await c.nth("order:status", 6)  # assigned, preparing, ready, picked up, out, delivered
    assert [e["order"]["status"] for e in heard] == [
        "CONFIRMED",
        "PREPARING",
        "READY",
        "PICKED_UP",
        "OUT_FOR_DELIVERY",
        "DELIVERED",
    ]
    assert all("deliveryCode" not in e["order"] for e in heard)  # the rider never sees the code
    assert all("deliveryCode" not in e["order"] for e in vend.events["order:status"])
    await eventually(lambda: _is_available(server, rider_id(c)), what="the rider to be free again")

    rated = await cust.ok("order:rate", {"orderId": oid, "rating": 5, "comment": "Hot and fast"})
    assert rated["order"]["status"] == "DELIVERED"
    assert await cust.err("order:rate", {"orderId": oid, "rating": 1}) == "conflict"
    status, body = await client.call("GET", f"/api/v1/vendors/{vend.vendor_id}", token=cust.token)
    assert status == 200 and body["ratingAvg"] == 5.0 and body["ratingCount"] == 1
    review = await db.fetchrow("SELECT rating, comment, rider_id FROM reviews WHERE order_id = $1", uuid.UUID(oid))
    assert dict(review) == {"rating": 5, "comment": "Hot and fast", "rider_id": uuid.UUID(rider_id(c))}

    status, mine = await client.call("GET", "/api/v1/orders", token=c.token)
    assert [o["id"] for o in mine["orders"]] == [oid] and "deliveryCode" not in mine["orders"][0]
    assert (await client.call("GET", f"/api/v1/orders/{oid}", token=a.token))[0] == 404  # offered, never assigned


async def _is_available(server: Server, rid: str) -> bool:
    return rid in await available(server)


async def test_five_wrong_codes_lock_delivery_for_ops(client: Client, server: Server, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    r = await rider(client, **near(0.5))
    oid = (await accepted_order(cust, vend))["id"]
    await deliver_ready(server, vend, oid, r)
    for left in (4, 3, 2, 1):
        reply = await r.call("order:update", {"orderId": oid, "status": "DELIVERED", "deliveryCode": "abcdef"})
        assert reply["error"]["code"] == "forbidden" and f"{left} attempt" in reply["error"]["message"]
    reply = await r.call("order:update", {"orderId": oid, "status": "DELIVERED", "deliveryCode": "abcdef"})
    assert reply["error"]["code"] == "forbidden" and "locked" in reply["error"]["message"]
    code = await db.fetchval("SELECT delivery_code FROM orders WHERE id = $1", uuid.UUID(oid))
    reply = await r.call("order:update", {"orderId": oid, "status": "DELIVERED", "deliveryCode": code})
    assert reply["error"]["code"] == "forbidden" and "locked" in reply["error"]["message"]
    row = await db.fetchrow("SELECT status, code_attempts FROM orders WHERE id = $1", uuid.UUID(oid))
    assert dict(row) == {"status": "OUT_FOR_DELIVERY", "code_attempts": 5}
    status, body = await client.call("GET", "/admin/orders/sla?kind=code_locked", headers=client.admin_headers())
    assert status == 200 and [e["orderId"] for e in body["events"]] == [oid]
    note = await db.fetchrow("SELECT channel, kind, recipient FROM notifications_outbox WHERE kind = 'code_locked'")
    assert dict(note) == {"channel": "push", "kind": "code_locked", "recipient": "ops"}


async def test_a_rider_going_offline_while_offered_passes_the_offer_on(
    client: Client, server: Server, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    a = await rider(client, **near(0.5))
    b = await rider(client, **near(1.5))
    oid = (await accepted_order(cust, vend))["id"]
    offer_a, offer_b = a.next("assignment:offer"), b.next("assignment:offer")
    await server.svc.orders.confirm_payment(oid)
    await offer_a
    await a.ok("rider:offline", {})
    assert (await offer_b)["orderId"] == oid


async def test_a_cancel_reaches_the_assigned_rider_and_frees_it(
    client: Client, server: Server, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    r = await rider(client, **near(0.5))
    oid = (await accepted_order(cust, vend))["id"]
    offer = r.next("assignment:offer")
    await server.svc.orders.confirm_payment(oid)
    await offer
    await r.ok("assignment:accept", {"orderId": oid})
    await eventually(lambda: _not_available(server, rider_id(r)), what="the rider to be taken")
    canceled = r.next("order:status")
    await vend.ok("order:update", {"orderId": oid, "status": "CANCELED", "reason": "out of gas"})
    heard = await canceled
    assert heard["order"]["status"] == "CANCELED" and heard["event"]["reason"] == "out of gas"
    await eventually(lambda: _is_available(server, rider_id(r)), what="the rider to be free again")
    assert await r.err("order:update", {"orderId": oid, "status": "PICKED_UP"}) == "conflict"


async def _not_available(server: Server, rid: str) -> bool:
    return rid not in await available(server)
