"""Order timers against a real server with shortened timings: the unpaid cancel (the sweeper
wakes an order no actor holds), and SLA breaches each recorded once as an ops event, an outbox
notification and a metric, visible in the admin API."""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg

from engine.runtime.metrics import REGISTRY
from tests.conftest import StartServer
from tests.e2e.util import accepted_order, customer, vendor
from tests.helpers import Client, eventually


def breaches(kind: str) -> float:
    return REGISTRY.get_sample_value("pocho_order_sla_breaches_total", {"kind": kind}) or 0.0


async def test_an_unpaid_order_is_canceled_by_the_sweeper(start_server: StartServer, db: asyncpg.Connection) -> None:
    server = await start_server(order_unpaid_cancel_seconds=1.0, sweep_seconds=0.05)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust = await customer(client)
            vend = await vendor(client, db)
            order = await accepted_order(cust, vend)
            canceled = (await cust.nth("order:status", 1))[0]  # nobody touched the order: the sweeper did
            assert canceled["order"]["status"] == "CANCELED" and canceled["order"]["id"] == order["id"]
            assert canceled["event"]["by"] == "system" and canceled["event"]["reason"] == "unpaid"
            assert (await vend.nth("order:status", 1))[0]["event"]["seq"] == 1
            stored = await db.fetchrow("SELECT status, sla_due_at FROM orders WHERE id = $1", uuid.UUID(order["id"]))
            assert dict(stored) == {"status": "CANCELED", "sla_due_at": None}
            assert await cust.err("order:cancel", {"orderId": order["id"], "reason": "late"}) == "conflict"
        finally:
            await client.close()


async def test_sla_breaches_are_recorded_once_each(start_server: StartServer, db: asyncpg.Connection) -> None:
    # 0.001: 10 minutes become 0.6 s. Prep promised 1 minute, so READY is late after 0.66 s.
    server = await start_server(order_sla_scale=0.001, sweep_seconds=0.05)
    before = {k: breaches(k) for k in ("prep_not_started", "ready_late", "unassigned")}
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust = await customer(client)
            vend = await vendor(client, db)
            oid = (await accepted_order(cust, vend, prep_minutes=1))["id"]
            await server.svc.orders.confirm_payment(oid)

            async def recorded() -> bool:
                kinds = await db.fetch("SELECT kind FROM order_ops_events WHERE order_id = $1", uuid.UUID(oid))
                return len(kinds) == 3

            await eventually(recorded, what="three SLA breaches")
            await vend.ok("order:update", {"orderId": oid, "status": "PREPARING"})  # late, but goes on
            await vend.ok("order:update", {"orderId": oid, "status": "READY"})

            rows = await db.fetch(
                "SELECT kind, details FROM order_ops_events WHERE order_id = $1 ORDER BY kind", uuid.UUID(oid)
            )
            assert [r["kind"] for r in rows] == ["sla:prep_not_started", "sla:ready_late", "sla:unassigned"]
            vendor_user = vend.user["id"]
            sla_rows = """SELECT user_id, channel, kind, recipient, status, outcome FROM notifications_outbox
                           WHERE kind = 'sla_breach' ORDER BY recipient"""

            async def settled() -> bool:  # the dispatcher (issue 10) takes them
                return all(n["status"] != "pending" for n in await db.fetch(sla_rows))

            await eventually(settled, what="the SLA notices settled")
            notes = await db.fetch(sla_rows)
            assert sorted((str(n["user_id"]), n["recipient"], n["outcome"]) for n in notes) == sorted(
                [(vendor_user, f"user:{vendor_user}", "online")] * 2 + [("None", "ops", "no_recipient")]
            )  # the vendor's socket is open: no push; ops read them below
            assert {(n["channel"], n["kind"], n["status"]) for n in notes} == {("push", "sla_breach", "skipped")}
            for kind, was in before.items():
                assert breaches(kind) == was + 1

            status, body = await client.call("GET", "/admin/orders/sla?limit=10", headers=client.admin_headers())
            assert status == 200 and len(body["events"]) == 3
            assert {e["details"]["sla"] for e in body["events"]} == {"prep_not_started", "ready_late", "unassigned"}
            status, _ = await client.call("GET", "/admin/orders/sla", token=cust.token)
            assert status == 403
            fired = await db.fetchval("SELECT sla_fired FROM orders WHERE id = $1", uuid.UUID(oid))
            assert sorted(fired) == ["prep_not_started", "ready_late", "unassigned"]
            # The order's state as ops see it in memory.
            status, actor = await client.call("GET", f"/admin/actors/order/{oid}", headers=client.admin_headers())
            assert status == 200 and sorted(actor["state"]["slaFired"]) == sorted(fired)
        finally:
            await client.close()
