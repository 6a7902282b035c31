"""Orders over real Socket.IO clients and HTTP: payment (internal), the vendor's statuses, who
sees the delivery code, authorization failures, replay after a reconnect, cancellation,
idempotency, history with a keyset cursor, and no HTTP route that confirms an order."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.conftest import Server
from tests.e2e.util import accepted_order, customer, reconnect, vendor
from tests.helpers import Client

CODE_LEN = 6


def code_of(event: dict[str, Any]) -> Any:
    return event["order"].get("deliveryCode", "absent")


async def test_paid_order_through_the_vendor_statuses(client: Client, server: Server, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    order = await accepted_order(cust, vend, prep_minutes=25)
    oid = order["id"]

    seen_c, seen_v = cust.next("order:status"), vend.next("order:status")
    confirmed = await server.svc.orders.confirm_payment(oid, reference="test-ref")
    assert confirmed["order"]["status"] == "CONFIRMED" and "deliveryCode" not in confirmed["order"]
    mine, theirs = await seen_c, await seen_v
    code = code_of(mine)
    assert isinstance(code, str) and len(code) == CODE_LEN and code.isdigit()
    assert code_of(theirs) == "absent"
    assert mine["event"]["seq"] == 1 and mine["event"]["by"] == "payment" and mine["order"]["etaMinutes"] == 25
    assert mine["order"]["paymentStatus"] == "PAID"

    seen_c = cust.next("order:status")
    prep = await vend.ok("order:update", {"orderId": oid, "status": "PREPARING", "etaMinutes": 15})
    assert prep["order"]["status"] == "PREPARING" and prep["order"]["etaMinutes"] == 15
    assert "deliveryCode" not in prep["order"]
    ev = (await seen_c)["event"]
    assert (ev["seq"], ev["status"], ev["previousStatus"], ev["by"]) == (2, "PREPARING", "CONFIRMED", "vendor")
    ready = await vend.ok("order:update", {"orderId": oid, "status": "READY"})
    assert ready["order"]["seq"] == 3

    # HTTP serves the committed state to the parties only.
    status, body = await client.call("GET", f"/api/v1/orders/{oid}", token=cust.token)
    assert status == 200 and body["order"]["status"] == "READY" and body["order"]["deliveryCode"] == code
    status, body = await client.call("GET", f"/api/v1/orders/{oid}", token=vend.token)
    assert status == 200 and "deliveryCode" not in body["order"]
    stranger = await customer(client)
    other_vendor = await vendor(client, db)
    for token in (stranger.token, other_vendor.token):
        assert (await client.call("GET", f"/api/v1/orders/{oid}", token=token))[0] == 404
        assert (await client.call("GET", f"/api/v1/orders/{oid}/events", token=token))[0] == 404
    assert (await client.call("GET", f"/api/v1/orders/{oid}"))[0] == 401
    assert (await client.call("GET", "/api/v1/orders/not-a-uuid", token=cust.token))[0] == 404

    status, body = await client.call("GET", f"/api/v1/orders/{oid}/events", token=cust.token)
    assert [e["seq"] for e in body["events"]] == [1, 2, 3]
    assert {e["data"]["order"]["deliveryCode"] for e in body["events"]} == {code}
    status, body = await client.call("GET", f"/api/v1/orders/{oid}/events?sinceSeq=1", token=vend.token)
    assert [e["seq"] for e in body["events"]] == [2, 3]
    assert all("deliveryCode" not in e["data"]["order"] for e in body["events"])

    rows = await db.fetch("SELECT seq, kind FROM order_events WHERE order_id = $1 ORDER BY seq", uuid.UUID(oid))
    assert [(r["seq"], r["kind"]) for r in rows] == [(1, "status"), (2, "status"), (3, "status")]
    stored = await db.fetchrow("SELECT status, seq, delivery_code FROM orders WHERE id = $1", uuid.UUID(oid))
    assert dict(stored) == {"status": "READY", "seq": 3, "delivery_code": code}


async def test_authorization_and_state_errors(client: Client, server: Server, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    other = await customer(client)
    other_vendor = await vendor(client, db)
    oid = (await accepted_order(cust, vend))["id"]

    # Before payment: the vendor cannot start, nobody can rate.
    assert await vend.err("order:update", {"orderId": oid, "status": "PREPARING"}) == "conflict"
    assert await cust.err("order:rate", {"orderId": oid, "rating": 5}) == "conflict"
    await server.svc.orders.confirm_payment(oid)
    assert await other.err("order:cancel", {"orderId": oid, "reason": "mine now"}) == "forbidden"
    assert await other.err("order:watch", {"orderId": oid}) == "forbidden"
    assert await other_vendor.err("order:update", {"orderId": oid, "status": "PREPARING"}) == "forbidden"
    assert await other_vendor.err("order:watch", {"orderId": oid}) == "forbidden"
    assert await vend.err("order:update", {"orderId": oid, "status": "READY"}) == "conflict"  # not PREPARING yet
    assert await vend.err("order:update", {"orderId": oid, "status": "CANCELED"}) == "invalid"  # no reason
    assert await vend.err("order:update", {"orderId": oid, "status": "DELIVERED"}) == "invalid"
    assert await vend.err("order:update", {"orderId": oid, "status": "PREPARING", "etaMinutes": 0}) == "invalid"
    assert await cust.err("order:cancel", {"orderId": oid}) == "invalid"  # reason is required
    assert await cust.err("order:rate", {"orderId": oid, "rating": 6}) == "invalid"
    assert await cust.err("order:watch", {"orderId": str(uuid.uuid4())}) == "not_found"
    assert await cust.err("order:cancel", {"orderId": "nope", "reason": "x"}) == "not_found"
    await vend.ok("order:update", {"orderId": oid, "status": "PREPARING"})
    assert await cust.err("order:cancel", {"orderId": oid, "reason": "too slow"}) == "conflict"  # cooking
    assert await cust.err("order:rate", {"orderId": oid, "rating": 4}) == "conflict"
    # Nothing above changed the order: two events (paid, preparing).
    assert await db.fetchval("SELECT seq FROM orders WHERE id = $1", uuid.UUID(oid)) == 2

    # No HTTP route confirms an order (payment is internal until the payments issue).
    for method, path in (
        ("POST", f"/api/v1/orders/{oid}"),
        ("PATCH", f"/api/v1/orders/{oid}"),
        ("POST", f"/api/v1/orders/{oid}/confirm"),
        ("POST", f"/api/v1/orders/{oid}/status"),
    ):
        status, _ = await client.call(method, path, {"status": "CONFIRMED"}, token=cust.token)
        assert status in (404, 405), (method, path, status)


async def test_watch_replays_what_a_reconnecting_client_missed(
    client: Client, server: Server, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    oid = (await accepted_order(cust, vend))["id"]
    await server.svc.orders.confirm_payment(oid)
    first = await cust.ok("order:watch", {"orderId": oid, "sinceSeq": 0})
    assert first["order"]["seq"] == 1 and [e["seq"] for e in first["events"]] == [1]
    assert first["riderLocation"] is None
    code = first["order"]["deliveryCode"]
    assert code is not None and first["events"][0]["data"]["order"]["deliveryCode"] == code

    await cust.sio.disconnect()  # the phone loses its connection; the kitchen goes on
    await vend.ok("order:update", {"orderId": oid, "status": "PREPARING"})
    await vend.ok("order:update", {"orderId": oid, "status": "READY"})

    again = await reconnect(cust)
    back = await again.call("order:watch", {"orderId": oid, "sinceSeq": 1})
    assert back["ok"], back
    data = back["data"]
    assert data["order"]["status"] == "READY" and data["order"]["seq"] == 3
    assert [(e["seq"], e["event"], e["data"]["event"]["status"]) for e in data["events"]] == [
        (2, "order:status", "PREPARING"),
        (3, "order:status", "READY"),
    ]
    assert all(e["data"]["order"]["deliveryCode"] == code for e in data["events"])
    none = await again.call("order:watch", {"orderId": oid, "sinceSeq": 3})
    assert none["data"]["events"] == []
    theirs = await vend.ok("order:watch", {"orderId": oid, "sinceSeq": 0})
    assert [e["seq"] for e in theirs["events"]] == [1, 2, 3]
    assert "deliveryCode" not in theirs["order"]
    assert all("deliveryCode" not in e["data"]["order"] for e in theirs["events"])


async def test_customer_cancel_is_idempotent_by_client_msg_id(
    client: Client, server: Server, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    oid = (await accepted_order(cust, vend))["id"]
    await server.svc.orders.confirm_payment(oid)
    cmd = {"orderId": oid, "reason": "ordered twice", "clientMsgId": "cancel-1"}
    first = await cust.ok("order:cancel", cmd)
    assert first["order"]["status"] == "CANCELED" and first["order"]["deliveryCode"] is not None
    event = (await vend.nth("order:status", 2))[1]["event"]  # paid, then canceled
    assert event["status"] == "CANCELED" and event["reason"] == "ordered twice" and event["by"] == "customer"
    assert await cust.ok("order:cancel", cmd) == first  # the first answer, nothing applied twice
    assert await cust.err("order:cancel", {**cmd, "clientMsgId": "cancel-2"}) == "conflict"
    assert await db.fetchval("SELECT count(*) FROM order_events WHERE order_id = $1", uuid.UUID(oid)) == 2
    assert await vend.err("order:update", {"orderId": oid, "status": "PREPARING"}) == "conflict"


async def test_order_history_is_keyset_paginated_newest_first(
    client: Client, server: Server, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    ids = [(await accepted_order(cust, vend))["id"] for _ in range(3)]
    await server.svc.orders.confirm_payment(ids[0])

    status, page1 = await client.call("GET", "/api/v1/orders?limit=2", token=cust.token)
    assert status == 200 and [o["id"] for o in page1["orders"]] == [ids[2], ids[1]]
    assert page1["nextCursor"]
    status, page2 = await client.call("GET", f"/api/v1/orders?limit=2&cursor={page1['nextCursor']}", token=cust.token)
    assert [o["id"] for o in page2["orders"]] == [ids[0]] and page2["nextCursor"] is None
    assert page2["orders"][0]["deliveryCode"] is not None  # the customer's own view

    status, confirmed = await client.call("GET", "/api/v1/orders?status=CONFIRMED", token=cust.token)
    assert [o["id"] for o in confirmed["orders"]] == [ids[0]]
    status, theirs = await client.call("GET", "/api/v1/orders?role=vendor", token=vend.token)
    assert [o["id"] for o in theirs["orders"]] == ids[::-1]
    assert all("deliveryCode" not in o for o in theirs["orders"])
    assert (await client.call("GET", "/api/v1/orders", token=(await customer(client)).token))[1]["orders"] == []

    assert (await client.call("GET", "/api/v1/orders?role=vendor", token=cust.token))[0] == 403
    assert (await client.call("GET", "/api/v1/orders?status=LOST", token=cust.token))[0] == 400
    assert (await client.call("GET", "/api/v1/orders?cursor=garbage", token=cust.token))[0] == 400
    assert (await client.call("GET", "/api/v1/orders?limit=0", token=cust.token))[0] == 400


async def test_vendor_objects_show_their_rating(client: Client, db: asyncpg.Connection) -> None:
    vend = await vendor(client, db)
    status, body = await client.call("GET", f"/api/v1/vendors/{vend.vendor_id}", token=vend.token)
    assert status == 200 and body["ratingAvg"] is None and body["ratingCount"] == 0
