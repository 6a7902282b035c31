"""Acked order statuses survive SIGKILL, and order deadlines still fire after a restart: the
sweeper for an order whose stored deadline passed while no server ran, a timer re-armed on
activation for one whose deadline comes after the start (the sweeper then sleeps)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg

from scripts.sio_lite import LiteClient
from tests.e2e.test_crash import _users, node_factory  # noqa: F401 - node_factory is a fixture
from tests.e2e.util import request_payload
from tests.helpers import eventually

# What a verified payment writes (the payments issue's webhooks; no HTTP route can): set in
# SQL while the order's actor has not loaded it, so the actor starts from a paid order.
_PAID = """UPDATE orders SET status = 'CONFIRMED', payment_status = 'PAID', confirmed_at = now(),
           delivery_code = '424242' WHERE id = $1"""


async def _order(cust: LiteClient, vend: LiteClient) -> str:
    req = (await cust.call("request:create", request_payload(expiresInMinutes=120)))["data"]["request"]
    bid = {"requestId": req["id"], "priceKobo": 300_000, "prepMinutes": 1}
    offer = (await vend.call("offer:place", bid))["data"]["offer"]
    order_id: str = (await cust.call("offer:accept", {"offerId": offer["id"]}))["data"]["order"]["id"]
    return order_id


async def _ok(client: LiteClient, event: str, data: dict[str, Any]) -> dict[str, Any]:
    reply = await client.call(event, data)
    assert reply["ok"], reply
    result: dict[str, Any] = reply["data"]
    return result


async def test_sigkill_keeps_acked_statuses_and_rearms_order_deadlines(
    node_factory: Any,  # noqa: F811
    db: asyncpg.Connection,
) -> None:
    cust_token, vend_token = await _users(db)
    node = node_factory()
    await node.start()
    async with aiohttp.ClientSession() as session:
        cust = LiteClient(session, node.url, "/customer")
        vend = LiteClient(session, node.url, "/vendor")
        await cust.connect({"token": cust_token})
        await vend.connect({"token": vend_token})
        swept, timed, canceled = [await _order(cust, vend) for _ in range(3)]
        for oid in (swept, timed, canceled):
            await db.execute(_PAID, uuid.UUID(oid))
        for status in ("PREPARING", "READY"):
            await _ok(vend, "order:update", {"orderId": swept, "status": status})
        await _ok(vend, "order:update", {"orderId": timed, "status": "PREPARING"})
        await _ok(cust, "order:cancel", {"orderId": canceled, "reason": "changed my mind"})
        node.kill()  # nothing more can be written: every ack above is all there is
        await cust.close()
        await vend.close()

    status_of = "SELECT status FROM orders WHERE id = $1"
    for oid, status in ((swept, "READY"), (timed, "PREPARING"), (canceled, "CANCELED")):
        assert await db.fetchval(status_of, uuid.UUID(oid)) == status
    seqs = await db.fetch("SELECT seq FROM order_events WHERE order_id = $1 ORDER BY seq", uuid.UUID(swept))
    assert [r["seq"] for r in seqs] == [1, 2]

    # While no server runs: `swept` is an hour past payment with no rider, and its stored
    # deadline has passed; `timed` will miss its rider 1 s after the restart, but its stored
    # deadline says an hour, so the sweeper leaves it alone.
    await db.execute(
        "UPDATE orders SET confirmed_at = now() - interval '1 hour', sla_due_at = now() - interval '1 second' "
        "WHERE id = $1",
        uuid.UUID(swept),
    )
    await db.execute(
        "UPDATE orders SET confirmed_at = now() - interval '10 minutes' + interval '1 second', "
        "sla_due_at = now() + interval '1 hour', dispatch_retry_at = now() + interval '1 hour' WHERE id = $1",
        uuid.UUID(timed),
    )

    node2 = node_factory(POCHO_SWEEP_SECONDS="3600")  # one sweep at start, then none during the test
    await node2.start()
    breach = "SELECT kind FROM order_ops_events WHERE order_id = $1"

    async def swept_breached() -> bool:
        return [r["kind"] for r in await db.fetch(breach, uuid.UUID(swept))] == ["sla:unassigned"]

    await eventually(swept_breached, what="the sweeper to wake the order whose deadline passed")
    assert await db.fetch(breach, uuid.UUID(timed)) == []
    async with aiohttp.ClientSession() as session:
        cust = LiteClient(session, node2.url, "/customer")
        await cust.connect({"token": cust_token})
        snap = await _ok(cust, "order:watch", {"orderId": swept, "sinceSeq": 0})
        assert snap["order"]["status"] == "READY" and snap["order"]["deliveryCode"] == "424242"
        assert [(e["seq"], e["data"]["event"]["status"]) for e in snap["events"]] == [(1, "PREPARING"), (2, "READY")]
        assert (await _ok(cust, "order:watch", {"orderId": timed}))["order"]["status"] == "PREPARING"  # activates it

        async def timed_breached() -> bool:
            return [r["kind"] for r in await db.fetch(breach, uuid.UUID(timed))] == ["sla:unassigned"]

        await eventually(timed_breached, what="the re-armed timer of the activated order")
        await cust.close()
