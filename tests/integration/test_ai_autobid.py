"""Auto-bid: the rules routes, and bids placed for an opted-in vendor on matching new requests
with prices from a local ML server: never under the vendor's floor, never outside the rule's
radius or for a budget that cannot pay the floor, nothing when the service fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from engine.runtime.metrics import REGISTRY
from tests.conftest import Server, StartServer
from tests.e2e.util import LAGOS, Party, customer, request_payload, vendor
from tests.fakes.ai import SUGGEST, FakeAi
from tests.helpers import Client, eventually
from tests.integration.test_catalogue import account

KEY = "autobid-key"
FLOOR = 280_000


@pytest.fixture
async def fake() -> AsyncIterator[FakeAi]:
    ai = await FakeAi(KEY).start()
    try:
        yield ai
    finally:
        await ai.stop()


@pytest.fixture
async def server(start_server: StartServer, fake: FakeAi) -> Server:
    return await start_server(feature_auto_bid=True, auto_bid_url=fake.url, auto_bid_key=KEY, ai_timeout_ms=200)


def path(vendor_id: str | None) -> str:
    return f"/api/v1/vendors/{vendor_id}/autobid"


def rule(**overrides: Any) -> dict[str, Any]:
    return {"category": "Nigerian", "minPriceKobo": FLOOR, "radiusKm": 5, **overrides}


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("pocho_autobid_total", {"outcome": outcome}) or 0.0


async def test_rules_routes(client: Client, db: asyncpg.Connection) -> None:
    v = await vendor(client, db)
    status, body = await client.call(
        "PUT", path(v.vendor_id), {"rules": [rule(), rule(category="Pizza", details="hot")]}, token=v.token
    )
    assert status == 200, body
    assert [(r["category"], r["minPriceKobo"], r["radiusKm"], r["details"]) for r in body["rules"]] == [
        ("nigerian", FLOOR, 5.0, None),
        ("pizza", FLOOR, 5.0, "hot"),
    ]
    assert (await client.call("GET", path(v.vendor_id), token=v.token)) == (200, body)
    _, admin = await account(client, db, "ADMIN")
    assert (await client.call("GET", path(v.vendor_id), token=admin)) == (200, body)

    for bad, field in (
        ({"rules": [rule(minPriceKobo=0)]}, "rules[0].minPriceKobo"),
        ({"rules": [rule(radiusKm=51)]}, "rules[0].radiusKm"),
        ({"rules": [rule(category="")]}, "rules[0].category"),
        ({"rules": [rule(), rule(category=" NIGERIAN ")]}, "rules"),
        ({"rules": [rule(category=f"c{i}") for i in range(21)]}, "rules"),
        ({}, "rules"),
    ):
        status, err = await client.call("PUT", path(v.vendor_id), bad, token=v.token)
        assert status == 400 and field in err["error"]["details"], (bad, err)
    assert (await client.call("GET", path(v.vendor_id), token=v.token))[1] == body  # nothing changed

    other = await vendor(client, db)
    cust = await customer(client)
    for token in (other.token, cust.token, admin):
        assert (await client.call("PUT", path(v.vendor_id), {"rules": []}, token=token))[0] == 403
    assert (await client.call("GET", path(v.vendor_id), token=other.token))[0] == 403
    assert (await client.call("GET", path(v.vendor_id)))[0] == 401
    for unknown in ("5d0c5d4e-0000-4000-8000-000000000000", "not-a-uuid"):
        assert (await client.call("GET", path(unknown), token=v.token))[0] == 404
    assert (await client.call("DELETE", path(v.vendor_id), token=v.token))[0] == 204
    assert (await client.call("GET", path(v.vendor_id), token=v.token)) == (200, {"rules": []})


async def _opted_in(client: Client, db: asyncpg.Connection) -> Party:
    v = await vendor(client, db, km=10.0)
    status, body = await client.call("PUT", path(v.vendor_id), {"rules": [rule()]}, token=v.token)
    assert status == 200, body
    return v


async def test_bids_at_the_suggestion_but_never_under_the_floor(
    client: Client, fake: FakeAi, db: asyncpg.Connection
) -> None:
    v = await _opted_in(client, db)
    bystander = await vendor(client, db)  # near too, but without rules: never bids
    cust = await customer(client)

    fake.answers[SUGGEST] = {"priceKobo": FLOOR - 30_000}  # under the floor: raised to it
    offered = cust.next("offer:new")
    req = (await cust.ok("request:create", request_payload(category="nigerian")))["request"]
    offer = (await offered)["offer"]
    assert (offer["vendorId"], offer["priceKobo"], offer["requestId"]) == (v.vendor_id, FLOOR, req["id"])
    asked = fake.calls[SUGGEST][-1]
    assert asked["request"]["id"] == req["id"] and asked["request"]["budgetMaxKobo"] == 500_000
    assert asked["vendor"]["id"] == v.vendor_id and asked["vendor"]["distanceKm"] == 0.0
    assert asked["rule"] == {"category": "nigerian", "minPriceKobo": FLOOR, "radiusKm": 5.0}
    rows = await db.fetch("SELECT vendor_id, price_kobo, status FROM offers WHERE request_id = $1::uuid", req["id"])
    assert [(str(r["vendor_id"]), r["price_kobo"], r["status"]) for r in rows] == [(v.vendor_id, FLOOR, "PENDING")]
    events = await db.fetch("SELECT kind FROM negotiation_events WHERE request_id = $1::uuid ORDER BY seq", req["id"])
    assert [e["kind"] for e in events] == ["request:new", "offer:new"]  # an ordinary offer, its own event
    assert bystander.vendor_id not in {str(r["vendor_id"]) for r in rows}

    fake.answers[SUGGEST] = {"priceKobo": 350_000, "prepMinutes": 25}
    offered = cust.next("offer:new")
    await cust.ok("request:create", request_payload(category="NIGERIAN"))
    offer = (await offered)["offer"]
    assert (offer["priceKobo"], offer["prepMinutes"]) == (350_000, 25)

    # The vendor keeps its say: it can revise the automatic offer like any other.
    revised = await v.ok("offer:revise", {"offerId": offer["id"], "priceKobo": 360_000})
    assert revised["offer"]["priceKobo"] == 360_000


async def test_no_bid_outside_the_radius_under_the_floor_or_without_a_suggestion(
    client: Client, fake: FakeAi, db: asyncpg.Connection
) -> None:
    v = await _opted_in(client, db)
    cust = await customer(client)

    async def no_bid(outcome: str, **request: Any) -> str:
        before = outcomes(outcome)
        seen = v.next("request:new")  # the vendor is told, as always
        req = (await cust.ok("request:create", request_payload(**request)))["request"]
        assert (await seen)["request"]["id"] == req["id"]
        await eventually(lambda: outcomes(outcome) > before, what=f"the auto-bidder's {outcome}")
        assert await db.fetchval("SELECT count(*) FROM offers WHERE request_id = $1::uuid", req["id"]) == 0
        return str(req["id"])

    calls = len(fake.calls[SUGGEST])
    far = await no_bid("no_match", deliveryLat=LAGOS[0] + 8 / 111.195)  # 8 km: in its area, not its 5 km rule
    poor = await no_bid("no_match", budgetMinKobo=100_000, budgetMaxKobo=FLOOR - 1)  # cannot pay the floor
    assert len(fake.calls[SUGGEST]) == calls  # the service is not even asked
    fake.mode[SUGGEST] = "error"
    failing = await no_bid("no_suggestion")
    fake.mode[SUGGEST] = "slow"
    slow = await no_bid("no_suggestion")
    assert len(fake.calls[SUGGEST]) == calls + 2
    # The vendor still bids by hand, as before auto-bid existed.
    for request_id in (far, poor, failing, slow):
        await v.ok("offer:place", {"requestId": request_id, "priceKobo": 300_000})


async def test_without_the_flag_rules_do_nothing(start_server: StartServer, db: asyncpg.Connection) -> None:
    server = await start_server()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            v = await _opted_in(client, db)
            cust = await customer(client)
            seen = v.next("request:new")
            req = (await cust.ok("request:create", request_payload()))["request"]
            await seen
            assert server.svc.ai.bidder is None
            assert await db.fetchval("SELECT count(*) FROM offers WHERE request_id = $1::uuid", req["id"]) == 0
        finally:
            await client.close()
