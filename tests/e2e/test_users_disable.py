"""Vendors and riders disabled by ops (issue 15), end to end over real sockets. A vendor's
sockets end, its live offers are withdrawn through the meal-request actors (customers see
offer:withdrawn), and it is matched to no new request (no request:new), also after a restart,
until enabled. A rider leaves dispatch at once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.conftest import StartServer
from tests.e2e.util import LAGOS, customer, request_payload, rider, rider_id, vendor
from tests.helpers import Client
from tests.integration.users_support import login, watch


async def test_disabled_vendor_loses_offers_and_requests(
    start_server: StartServer, client: Client, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    cust.listen("offer:withdrawn")
    bad = await vendor(client, db)
    good = await vendor(client, db)
    bad_revoked, bad_gone = watch(bad.sio, "/vendor")
    for v in (bad, good):
        v.listen("request:new")

    seen = bad.next("request:new"), good.next("request:new")
    req = (await cust.ok("request:create", request_payload()))["request"]
    assert [e["request"]["id"] for e in await asyncio.gather(*seen)] == [req["id"]] * 2
    offer = (await bad.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]
    kept = (await good.ok("offer:place", {"requestId": req["id"], "priceKobo": 310_000}))["offer"]

    withdrawn = cust.next("offer:withdrawn")
    status, body = await client.call(
        "POST", f"/admin/users/{bad.user['id']}/disable", {"reason": "fake kitchen"}, headers=client.admin_headers()
    )
    assert status == 200 and body["offersWithdrawn"] == 1
    event = await withdrawn
    assert event["offer"]["id"] == offer["id"] and event["offer"]["status"] == "WITHDRAWN"
    assert await asyncio.wait_for(bad_revoked, 5) == {"reason": "account_disabled"}
    await asyncio.wait_for(bad_gone, 5)
    rows = await db.fetch("SELECT id::text, status FROM offers ORDER BY created_at")
    assert {r["id"]: r["status"] for r in rows} == {offer["id"]: "WITHDRAWN", kept["id"]: "PENDING"}

    # New requests reach the other vendor only: the disabled one left the geo index, and
    # neither a profile change nor a restart's rebuild of the index brings it back.
    svc = client.server.svc
    assert bad.vendor_id not in await svc.geo.vendors_covering(*LAGOS)
    await svc.negotiation.vendor_changed(str(bad.vendor_id))
    node2 = await start_server()  # start-up rebuilds the vendor index from PostgreSQL
    assert bad.vendor_id not in await node2.svc.geo.vendors_covering(*LAGOS)
    assert good.vendor_id in await node2.svc.geo.vendors_covering(*LAGOS)
    nxt = good.next("request:new")
    req2 = (await cust.ok("request:create", request_payload(addressLine="3 Bourdillon Rd")))["request"]
    assert (await nxt)["request"]["id"] == req2["id"]
    assert [e["request"]["id"] for e in bad.events["request:new"]] == [req["id"]]

    # Enabled again: back in the index, and a fresh login sees new requests.
    status, _ = await client.call("POST", f"/admin/users/{bad.user['id']}/enable", headers=client.admin_headers())
    assert status == 200
    assert bad.vendor_id in await svc.geo.vendors_covering(*LAGOS)
    status, body = await login(client, bad.user["phone"])
    assert status == 200
    sio = await client.connect("/vendor", body["tokens"]["accessToken"])
    got: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
    sio.on("request:new", lambda data: got.done() or got.set_result(data), namespace="/vendor")
    req3 = (await cust.ok("request:create", request_payload(addressLine="9 Glover Rd")))["request"]
    assert (await asyncio.wait_for(got, 10))["request"]["id"] == req3["id"]
    assert await db.fetchval("SELECT disabled FROM users WHERE id = $1", uuid.UUID(bad.user["id"])) is False


async def test_disabled_rider_leaves_dispatch(client: Client, db: asyncpg.Connection) -> None:
    """A rider online for dispatch is offline the moment ops disable the account (not a
    heartbeat later), so no order is offered to someone who can no longer connect."""
    rid_party = await rider(client)
    svc = client.server.svc
    riders_near = [c.rider_id for c in await svc.riders.available_near(*LAGOS, 5.0, 50)]
    assert rider_id(rid_party) in riders_near
    revoked, gone = watch(rid_party.sio, "/rider")
    status, _ = await client.call(
        "POST",
        f"/admin/users/{rid_party.user['id']}/disable",
        {"reason": "unsafe riding"},
        headers=client.admin_headers(),
    )
    assert status == 200
    assert await asyncio.wait_for(revoked, 5) == {"reason": "account_disabled"}
    await asyncio.wait_for(gone, 5)
    assert rider_id(rid_party) not in [c.rider_id for c in await svc.riders.available_near(*LAGOS, 5.0, 50)]
