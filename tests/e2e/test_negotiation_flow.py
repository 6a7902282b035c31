"""The whole negotiation over real Socket.IO clients against a running server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from tests.e2e.util import LAGOS, customer, request_payload, vendor
from tests.helpers import Client


async def test_full_negotiation_flow(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    a = await vendor(client, db, name="Mama A")
    b = await vendor(client, db, lat=LAGOS[0] + 0.02, name="Chef B")  # ~2.2 km away, radius 10 km
    far = await vendor(client, db, lat=LAGOS[0] + 1.0, km=5.0)  # ~110 km away
    unverified = await vendor(client, db, verified=False)

    new_a, new_b = a.next("request:new"), b.next("request:new")
    created = await cust.ok("request:create", request_payload())
    req = created["request"]
    assert req["status"] == "OPEN" and req["seq"] == 1 and req["customerId"] == cust.user["id"]
    assert (await new_a)["request"]["id"] == req["id"]
    assert (await new_b)["request"]["id"] == req["id"]

    offer_a = (await a.ok("offer:place", {"requestId": req["id"], "priceKobo": 400_000, "prepMinutes": 30}))["offer"]
    assert offer_a["status"] == "PENDING" and offer_a["isCompetitive"] is True and offer_a["vendorName"] == "Mama A"
    seen = await cust.nth("offer:new", 1)
    assert seen[0]["offer"]["id"] == offer_a["id"] and seen[0]["seq"] == 2

    flip = cust.next("offer:updated")
    offer_b = (await b.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]
    assert offer_b["isCompetitive"] is True
    updated = await flip  # A is now above the median of {300k, 400k}
    assert updated["offer"]["id"] == offer_a["id"] and updated["offer"]["isCompetitive"] is False

    countered = a.next("offer:countered")
    c = (await cust.ok("offer:counter", {"offerId": offer_a["id"], "priceKobo": 320_000, "message": "abeg"}))["offer"]
    assert c["status"] == "COUNTERED" and c["counterPriceKobo"] == 320_000 and c["round"] == 1
    assert (await countered)["offer"]["id"] == offer_a["id"]

    agreed = (await a.ok("counter:accept", {"offerId": offer_a["id"]}))["offer"]
    assert agreed["priceKobo"] == 320_000 and agreed["status"] == "PENDING"

    accepted = a.next("offer:accepted")
    rejected = b.next("offer:rejected")
    closed_a = a.next("request:closed")
    closed_b = b.next("request:closed")
    result = await cust.ok("offer:accept", {"offerId": offer_a["id"]})
    assert result["offer"]["status"] == "ACCEPTED"
    order = result["order"]
    assert order["status"] == "PENDING_PAYMENT" and order["amountKobo"] == 320_000
    assert (await accepted)["orderId"] == order["id"]
    assert (await rejected)["offer"]["id"] == offer_b["id"]
    assert (await closed_a) == {"requestId": req["id"], "reason": "accepted", "seq": (await closed_b)["seq"]}

    # The far and unverified vendors heard nothing.
    assert not far.events["request:new"] and not unverified.events["request:new"]

    # Everything acked is in PostgreSQL, events gap-free.
    row = await db.fetchrow("SELECT status, seq, order_id FROM meal_requests WHERE id = $1", uuid.UUID(req["id"]))
    assert row["status"] == "ACCEPTED" and str(row["order_id"]) == order["id"]
    seqs = [
        r["seq"]
        for r in await db.fetch(
            "SELECT seq FROM negotiation_events WHERE request_id = $1 ORDER BY seq", uuid.UUID(req["id"])
        )
    ]
    assert seqs == list(range(1, row["seq"] + 1))
    o = await db.fetchrow("SELECT status, amount_kobo FROM orders WHERE id = $1", uuid.UUID(order["id"]))
    assert o["status"] == "PENDING_PAYMENT" and o["amount_kobo"] == 320_000
    statuses = dict(await db.fetch("SELECT id::text, status FROM offers WHERE request_id = $1", uuid.UUID(req["id"])))
    assert statuses == {offer_a["id"]: "ACCEPTED", offer_b["id"]: "REJECTED"}

    # Anything on a closed request is a conflict.
    assert await b.err("offer:place", {"requestId": req["id"], "priceKobo": 1000}) == "conflict"
    assert await cust.err("request:cancel", {"requestId": req["id"]}) == "conflict"


async def test_error_codes(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    other = await customer(client)
    a = await vendor(client, db)
    b = await vendor(client, db)
    unverified = await vendor(client, db, verified=False)
    far = await vendor(client, db, lat=LAGOS[0] + 1.0, km=5.0)

    assert await cust.err("request:create", {"category": "x"}) == "invalid"
    bad = await cust.call("request:create", request_payload(budgetMinKobo="lots"))
    assert bad["error"]["code"] == "invalid" and "budgetMinKobo" in bad["error"]["details"]
    assert await cust.err("request:create", request_payload(budgetMinKobo=600_000)) == "invalid"  # min > max
    assert await cust.err("request:create", request_payload(expiresInMinutes=121)) == "invalid"
    assert await cust.err("request:create", request_payload(addressLine="x" * 300)) == "invalid"
    assert await cust.err("request:create", ["not", "an", "object"]) == "invalid"  # type: ignore[arg-type]

    req = (await cust.ok("request:create", request_payload(maxVendorOffers=1)))["request"]
    rid = req["id"]
    assert await cust.err("request:watch", {"requestId": str(uuid.uuid4())}) == "not_found"
    assert await cust.err("request:watch", {"requestId": "not-a-uuid"}) == "not_found"
    assert await other.err("request:cancel", {"requestId": rid}) == "forbidden"
    assert await other.err("request:watch", {"requestId": rid}) == "forbidden"
    assert await unverified.err("offer:place", {"requestId": rid, "priceKobo": 1000}) == "forbidden"
    assert await far.err("offer:place", {"requestId": rid, "priceKobo": 1000}) == "forbidden"

    offer = (await a.ok("offer:place", {"requestId": rid, "priceKobo": 300_000}))["offer"]
    assert await a.err("offer:place", {"requestId": rid, "priceKobo": 300_000}) == "conflict"
    assert await b.err("offer:place", {"requestId": rid, "priceKobo": 250_000}) == "limit_reached"
    assert await b.err("offer:revise", {"offerId": offer["id"], "priceKobo": 1}) == "forbidden"
    assert await b.err("offer:withdraw", {"offerId": offer["id"]}) == "forbidden"
    assert await other.err("offer:accept", {"offerId": offer["id"]}) == "forbidden"
    assert await cust.err("offer:accept", {"offerId": str(uuid.uuid4())}) == "not_found"
    assert await a.err("counter:accept", {"offerId": offer["id"]}) == "conflict"  # nothing countered

    for price in (280_000, 270_000, 260_000):
        await cust.ok("offer:counter", {"offerId": offer["id"], "priceKobo": price})
        assert await cust.err("offer:counter", {"offerId": offer["id"], "priceKobo": price}) == "conflict"
        await a.ok("offer:revise", {"offerId": offer["id"], "priceKobo": price + 5_000})
    assert await cust.err("offer:counter", {"offerId": offer["id"], "priceKobo": 250_000}) == "limit_reached"

    # A withdrawn offer frees the slot; nothing changed by any failed command above.
    await a.ok("offer:withdraw", {"offerId": offer["id"]})
    assert (await b.ok("offer:place", {"requestId": rid, "priceKobo": 250_000}))["offer"]["status"] == "PENDING"
    rows = await db.fetch("SELECT status FROM offers WHERE request_id = $1 ORDER BY created_at", uuid.UUID(rid))
    assert [r["status"] for r in rows] == ["WITHDRAWN", "PENDING"]


async def test_idempotent_retries(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    a = await vendor(client, db)
    first = await cust.ok("request:create", request_payload(clientMsgId="c-1"))
    again = await cust.ok("request:create", request_payload(clientMsgId="c-1"))
    assert again == first
    rid = first["request"]["id"]
    assert await db.fetchval("SELECT count(*) FROM meal_requests") == 1

    placed = await a.ok("offer:place", {"requestId": rid, "priceKobo": 300_000, "clientMsgId": "p-1"})
    replay = await a.ok("offer:place", {"requestId": rid, "priceKobo": 300_000, "clientMsgId": "p-1"})
    assert replay == placed
    rev = {"offerId": placed["offer"]["id"], "priceKobo": 290_000, "clientMsgId": "r-1"}
    r1 = await a.ok("offer:revise", rev)
    await a.ok("offer:revise", {**rev, "priceKobo": 280_000, "clientMsgId": "r-2"})
    assert await a.ok("offer:revise", rev) == r1  # the first answer, not a third change
    assert await db.fetchval("SELECT count(*) FROM offers") == 1
    assert await db.fetchval("SELECT price_kobo FROM offers") == 280_000
    # Replies survive passivation: the retry after reload still gets the first answer.
    assert client.server.svc.actors.passivate("meal_request", rid)
    assert await a.ok("offer:revise", rev) == r1
    assert await db.fetchval("SELECT price_kobo FROM offers") == 280_000


async def test_expiry_reaches_everyone(start_server: Any, db: asyncpg.Connection) -> None:
    import aiohttp

    server = await start_server(expiry_scale=1 / 60)  # one "minute" lasts a second
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust = await customer(client)
            a = await vendor(client, db)
            # Listening before the request exists: no event can slip past, however slow the steps below.
            expired, offer_expired, closed = (
                cust.next("request:expired", timeout=20),
                a.next("offer:expired", timeout=20),
                a.next("request:closed", timeout=20),
            )
            # The timer armed at creation is what expires it; three seconds is ample to place one offer.
            rid = (await cust.ok("request:create", request_payload(expiresInMinutes=3)))["request"]["id"]
            await a.ok("offer:place", {"requestId": rid, "priceKobo": 300_000})
            assert (await expired)["requestId"] == rid
            assert (await offer_expired)["offer"]["status"] == "EXPIRED"
            assert (await closed)["reason"] == "expired"
            assert await cust.err("offer:accept", {"offerId": (await offer_expired)["offer"]["id"]}) == "conflict"
            assert await db.fetchval("SELECT status FROM meal_requests WHERE id = $1", uuid.UUID(rid)) == "EXPIRED"
        finally:
            await client.close()


async def test_watch_replays_exactly_what_was_missed(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    a = await vendor(client, db)
    rid = (await cust.ok("request:create", request_payload()))["request"]["id"]
    offer = (await a.ok("offer:place", {"requestId": rid, "priceKobo": 300_000}))["offer"]
    seen = (await cust.nth("offer:new", 1))[0]["seq"]
    await cust.sio.disconnect()

    await a.ok("offer:revise", {"offerId": offer["id"], "priceKobo": 290_000})
    await a.ok("offer:revise", {"offerId": offer["id"], "priceKobo": 280_000})
    await a.ok("offer:withdraw", {"offerId": offer["id"]})

    sio = await client.connect("/customer", cust.token)
    reply = await sio.call("request:watch", {"requestId": rid, "sinceSeq": seen}, namespace="/customer", timeout=5)
    assert reply["ok"], reply
    data = reply["data"]
    assert [e["seq"] for e in data["events"]] == [seen + 1, seen + 2, seen + 3]
    assert [e["event"] for e in data["events"]] == ["offer:updated", "offer:updated", "offer:withdrawn"]
    assert data["events"][1]["data"]["offer"]["priceKobo"] == 280_000
    assert data["request"]["seq"] == seen + 3 and data["offers"][0]["status"] == "WITHDRAWN"

    # The same from PostgreSQL once the actor is gone from memory.
    assert client.server.svc.actors.passivate("meal_request", rid)
    again = await sio.call("request:watch", {"requestId": rid, "sinceSeq": seen + 1}, namespace="/customer")
    assert [e["seq"] for e in again["data"]["events"]] == [seen + 2, seen + 3]

    # The watcher is in the live room now.
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    sio.on("request:closed", lambda d: got.done() or got.set_result(d), namespace="/customer")
    cancelled = await sio.call("request:cancel", {"requestId": rid}, namespace="/customer", timeout=5)
    assert cancelled["ok"] and cancelled["data"]["request"]["status"] == "CANCELLED"
    assert (await asyncio.wait_for(got, 5))["reason"] == "cancelled"


async def test_http_reads_stored_state(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    other = await customer(client)
    a = await vendor(client, db)
    rid = (await cust.ok("request:create", request_payload()))["request"]["id"]
    await a.ok("offer:place", {"requestId": rid, "priceKobo": 300_000})
    status, body = await client.call("GET", "/api/v1/meal-requests?status=open", token=cust.token)
    assert status == 200 and [r["id"] for r in body["requests"]] == [rid]
    status, body = await client.call("GET", f"/api/v1/meal-requests/{rid}", token=cust.token)
    assert status == 200 and body["request"]["offerCount"] == 1 and len(body["offers"]) == 1
    assert (await client.call("GET", f"/api/v1/meal-requests/{rid}", token=other.token))[0] == 404
    assert (await client.call("GET", "/api/v1/meal-requests?status=bogus", token=cust.token))[0] == 400
    assert (await client.call("GET", "/api/v1/meal-requests"))[0] == 401
    status, body = await client.call("GET", "/api/v1/meal-requests", token=other.token)
    assert status == 200 and body["requests"] == []
    status, body = await client.call("GET", "/api/v1/meal-requests", token=a.token)
    assert status == 200 and [r["id"] for r in body["requests"]] == [rid]
    near = await a.ok("requests:nearby", {})
    assert [r["id"] for r in near["requests"]] == [rid]
    # A vendor out of range with no offer on it cannot read the request (address, notes...).
    far = await vendor(client, db, lat=LAGOS[0] + 1.0, km=5.0)
    assert (await client.call("GET", f"/api/v1/meal-requests/{rid}", token=far.token))[0] == 404
    status, body = await client.call("GET", f"/api/v1/meal-requests/{rid}", token=a.token)
    assert status == 200 and len(body["offers"]) == 1


async def test_presence_counts_distinct_vendors_viewing(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    a = await vendor(client, db)
    b = await vendor(client, db)
    far = await vendor(client, db, lat=LAGOS[0] + 1.0, km=5.0)
    rid = (await cust.ok("request:create", request_payload()))["request"]["id"]

    counts: list[int] = []
    for who, expected in ((a, 1), (b, 2)):
        seen = cust.next("presence")
        snap = await who.ok("request:watch", {"requestId": rid})
        assert snap["request"]["id"] == rid and snap["offers"] == []
        got = await seen
        assert got["requestId"] == rid
        counts.append(got["vendorsViewing"])
        assert got["vendorsViewing"] == expected
    # A second socket of vendor A does not count twice; a far vendor may not look.
    a2 = await client.connect("/vendor", a.token)
    again = await a2.call("request:watch", {"requestId": rid}, namespace="/vendor", timeout=5)
    assert again["ok"]
    assert await far.err("request:watch", {"requestId": rid}) == "forbidden"
    watch = await cust.ok("request:watch", {"requestId": rid})
    assert watch["vendorsViewing"] == 2

    dropped = cust.next("presence")
    await b.sio.disconnect()
    assert (await dropped)["vendorsViewing"] == 1
    left = cust.next("presence")
    await a.ok("request:unwatch", {"requestId": rid})  # A's other socket still views it
    await a2.call("request:unwatch", {"requestId": rid}, namespace="/vendor", timeout=5)
    assert (await left)["vendorsViewing"] == 0
    assert counts == [1, 2]


async def test_admin_sees_and_passivates_live_actors(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    rid = (await cust.ok("request:create", request_payload()))["request"]["id"]
    admin = client.admin_headers()
    status, body = await client.call("GET", "/admin/actors?kind=meal_request", headers=admin)
    node = client.server.svc.node_id  # a node of its own: it owns every actor
    assert status == 200 and {"kind": "meal_request", "id": rid, "node": node} in body["actors"]
    status, body = await client.call("GET", f"/admin/actors/meal_request/{rid}", headers=admin)
    assert status == 200 and body["state"]["request"]["status"] == "OPEN" and body["node"] == node
    assert (await client.call("GET", f"/admin/actors/meal_request/{rid}", token=cust.token))[0] == 403
    assert (await client.call("GET", "/admin/actors", headers={"X-Admin-Key": "wrong"}))[0] == 401
    status, _ = await client.call("POST", f"/admin/actors/meal_request/{rid}/passivate", headers=admin)
    assert status == 200
    assert (await client.call("GET", f"/admin/actors/meal_request/{rid}", headers=admin))[0] == 404
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'actor.passivate'") == 1
    # Still served after passivation: the next command reactivates it from PostgreSQL.
    assert (await cust.ok("request:watch", {"requestId": rid}))["request"]["id"] == rid
