"""Rider sessions over real Socket.IO clients: presence in the available-rider index, the
heartbeat, ping validation, coalescing of a flood, location history through COPY, and
`rider:location` reaching the customer of the order the rider carries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from engine.assignment import RIDER_KIND, Carrying
from engine.clock import iso
from engine.rider_actor import RiderActor
from pocho_rt.publisher import order_room
from tests.conftest import Server, StartServer
from tests.e2e.util import LAGOS, Party, customer, request_payload, vendor
from tests.helpers import Client, eventually

FLUSH_MS = 20  # location history COPY interval (shortened for the tests)


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server(rider_location_flush_ms=FLUSH_MS)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        c = Client(session, server)
        try:
            yield c
        finally:
            await c.close()


async def rider(client: Client, *, profile: bool = True) -> Party:
    """A RIDER account with a rider profile (riders.id in `vendor_id`'s place: `rider_id`)."""
    reg = await client.register("RIDER")
    token = reg["tokens"]["accessToken"]
    rider_id = None
    if profile:
        status, body = await client.call("POST", "/api/v1/riders", {"vehicleType": "motorcycle"}, token=token)
        assert status == 201, body
        rider_id = body["id"]
    sio = await client.connect("/rider", token)
    p = Party(client, "/rider", reg["user"], token, sio, vendor_id=rider_id)
    p.listen("assignment:offer", "assignment:revoked")
    return p


def rider_id(p: Party) -> str:
    assert p.vendor_id is not None
    return p.vendor_id


def ping(lat: float = LAGOS[0], lng: float = LAGOS[1], *, ago: float = 0.0, **extra: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(seconds=ago)
    return {"lat": lat, "lng": lng, "recordedAt": at.isoformat().replace("+00:00", "Z"), **extra}


async def available(server: Server, lat: float = LAGOS[0], lng: float = LAGOS[1]) -> list[str]:
    return [c.rider_id for c in await server.svc.riders.available_near(lat, lng, 5.0, 50)]


def actor(server: Server, rid: str) -> RiderActor:
    a = server.svc.actors.get(RIDER_KIND, rid)
    assert isinstance(a, RiderActor)
    return a


async def history(db: asyncpg.Connection, rid: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT order_id, lat, lng, heading, speed_kmh, accuracy_m, recorded_at, received_at"
        " FROM rider_locations WHERE rider_id = $1 ORDER BY recorded_at",
        uuid.UUID(rid),
    )


# ---------------------------------------------------------------- presence


async def test_online_and_offline_move_the_rider_in_and_out_of_the_index(server: Server, client: Client) -> None:
    r = await rider(client)
    rid = rider_id(r)
    assert await available(server) == []
    assert await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]}) == {"online": True}
    assert await available(server) == [rid]  # the ack waited for the index
    near = await server.svc.riders.available_near(LAGOS[0] + 0.01, LAGOS[1], 5.0, 10)
    assert near[0].rider_id == rid and 1.0 < near[0].distance_km < 1.2
    assert await server.svc.riders.available_near(LAGOS[0] + 1.0, LAGOS[1], 5.0, 10) == []  # ~111 km away
    assert await r.ok("rider:offline", {}) == {"online": False}
    assert await available(server) == []


async def test_nearest_first(server: Server, client: Client) -> None:
    far, near = await rider(client), await rider(client)
    await far.ok("rider:online", {"lat": LAGOS[0] + 0.03, "lng": LAGOS[1]})
    await near.ok("rider:online", {"lat": LAGOS[0] + 0.01, "lng": LAGOS[1]})
    assert await available(server) == [rider_id(near), rider_id(far)]
    found = await server.svc.riders.available_near(LAGOS[0], LAGOS[1], 5.0, 1)
    assert [c.rider_id for c in found] == [rider_id(near)]


async def test_silent_rider_lapses_and_comes_back_with_its_pings(start_server: StartServer) -> None:
    server = await start_server(rider_heartbeat_seconds=0.5)  # a short heartbeat for this test only
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            r = await rider(client)
            rid = rider_id(r)
            await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})

            async def gone() -> bool:
                return await available(server) == []

            await eventually(gone, what="the heartbeat to take the rider out of the index")
            assert actor(server, rid).lapsed and server.svc.riders.stats.lapsed == 1
            assert await r.ok("location", ping()) == {"online": True}  # pings back: available again

            async def back() -> bool:
                return await available(server) == [rid]

            await eventually(back, what="the rider back in the index")
        finally:
            await client.close()


async def test_disconnect_does_not_take_the_rider_offline(server: Server, client: Client) -> None:
    r = await rider(client)
    rid = rider_id(r)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    sid = r.sio.get_sid("/rider")
    await r.sio.disconnect()
    await eventually(lambda: not server.svc.sio.manager.is_connected(sid, "/rider"), what="the server to notice")
    assert actor(server, rid).online and await available(server) == [rid]  # the heartbeat decides, later


async def test_rider_without_profile_is_forbidden(server: Server, client: Client) -> None:
    r = await rider(client, profile=False)
    for event, data in (
        ("rider:online", {"lat": 6.5, "lng": 3.3}),
        ("rider:offline", {}),
        ("location", ping()),
        ("assignment:accept", {"orderId": str(uuid.uuid4())}),
        ("order:update", {"orderId": str(uuid.uuid4()), "status": "PICKED_UP"}),
    ):
        assert await r.err(event, data) == "forbidden", event
    assert await r.err("rider:teleport", {}) == "not_found"


async def test_other_roles_cannot_use_the_rider_namespace(client: Client) -> None:
    reg = await client.register("CUSTOMER")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect("/rider", reg["tokens"]["accessToken"])


# ---------------------------------------------------------------- pings


BAD_PINGS: list[tuple[Any, str]] = [
    ({"lat": 6.5, "lng": 3.3}, "recordedAt"),
    (ping(lat=91.0), "lat"),
    (ping(lng=-180.5), "lng"),
    (ping(lat="6.5"), "lat"),
    (ping(lat=True), "lat"),
    (ping(heading=361), "heading"),
    (ping(speedKmh=-1), "speedKmh"),
    (ping(speedKmh=900), "speedKmh"),
    (ping(accuracyM=20_000), "accuracyM"),
    (ping(ago=-300), "recordedAt"),  # five minutes in the future
    (ping(ago=11 * 60), "recordedAt"),  # older than ten minutes
    ({**ping(), "recordedAt": "yesterday"}, "recordedAt"),
    ({**ping(), "recordedAt": "2026-11-25T12:00:00"}, "recordedAt"),  # no timezone
    ("6.5,3.3", "body"),
]


async def test_malformed_pings_are_invalid_and_change_nothing(
    server: Server, client: Client, db: asyncpg.Connection
) -> None:
    r = await rider(client)
    rid = rider_id(r)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    stats = server.svc.riders.stats
    for payload, field in BAD_PINGS:
        reply = await r.sio.call("location", payload, namespace="/rider", timeout=10)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid", payload
        assert field in reply["error"]["details"], (payload, reply)
    assert stats.invalid == len(BAD_PINGS) and stats.accepted == 0
    assert actor(server, rid).track.last is None
    assert await r.ok("location", ping(heading=0, speedKmh=0, accuracyM=0)) == {"online": True}
    assert stats.accepted == 1
    await eventually(lambda: server.svc.riders.history.written == 1, what="the flush")
    assert len(await history(db, rid)) == 1


async def test_an_implausible_jump_is_dropped_and_counted(server: Server, client: Client) -> None:
    r = await rider(client)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    stats = server.svc.riders.stats
    assert await r.ok("location", ping(ago=10)) == {"online": True}
    # 55 km in 10 s. Sent right after the first, it waits for its coalescing window, so its
    # ack cannot say `dropped` (an ack given at once does); the counter does.
    assert await r.ok("location", ping(lat=LAGOS[0] + 0.5)) == {"online": True}
    await eventually(lambda: stats.jump == 1, what="the jump judged")
    assert stats.accepted == 1 and actor(server, rider_id(r)).where is not None
    assert actor(server, rider_id(r)).where.lat == LAGOS[0]


async def test_history_reaches_rider_locations_through_copy(
    server: Server, client: Client, db: asyncpg.Connection
) -> None:
    r = await rider(client)
    rid = rider_id(r)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    sent = [ping(LAGOS[0] + i * 0.0005, ago=30 - i * 5, heading=90.0, speedKmh=18.0, accuracyM=4.0) for i in range(3)]
    for p in sent:
        await r.ok("location", p)
    stats = server.svc.riders.stats

    async def stored() -> bool:
        return server.svc.riders.history.written >= stats.accepted and stats.accepted + stats.coalesced == 3

    await eventually(stored, what="every handled ping stored")
    rows = await history(db, rid)
    assert len(rows) == stats.accepted >= 1
    last = rows[-1]
    assert (last["lat"], last["lng"]) == (sent[-1]["lat"], sent[-1]["lng"])  # the newest always lands
    assert (last["heading"], last["speed_kmh"], last["accuracy_m"]) == (90.0, 18.0, 4.0)
    assert last["order_id"] is None and last["received_at"] >= last["recorded_at"]


async def test_a_flood_is_coalesced_not_refused(server: Server, client: Client, db: asyncpg.Connection) -> None:
    r = await rider(client)
    rid = rider_id(r)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    stats = server.svc.riders.stats
    flood = 200
    start = datetime.now(UTC) - timedelta(seconds=60)
    pings = []
    for i in range(flood):
        at = (start + timedelta(milliseconds=100 * i)).isoformat().replace("+00:00", "Z")
        pings.append({"lat": LAGOS[0] + i * 0.00001, "lng": LAGOS[1], "recordedAt": at})
    for p in pings[:-1]:
        await r.sio.emit("location", p, namespace="/rider")  # no ack, as a real app floods
    assert await r.ok("location", pings[-1]) == {"online": True}  # events of one socket run in order
    assert stats.received == flood and stats.invalid == 0

    async def settled() -> bool:  # the newest ping, if it waited for its window, is handled
        return actor(server, rid)._pending is None and server.svc.riders.history.written == stats.accepted

    await eventually(settled, what="the waiting ping handled and every accepted row stored")
    assert stats.accepted + stats.coalesced + stats.jump + stats.stale == flood
    assert stats.coalesced > 0 and stats.handled < flood  # coalesced, not all handled...
    rows = await history(db, rid)
    assert len(rows) == stats.accepted  # ...and only the handled ones stored
    assert rows[-1]["lat"] == pings[-1]["lat"]  # the newest is never lost
    assert actor(server, rid).where is not None and actor(server, rid).where.lat == pings[-1]["lat"]
    async with client.session.get("/metrics") as resp:  # counted for ops too (summed over the process)
        text = await resp.text()
    assert 'pocho_rider_pings_total{outcome="coalesced"}' in text and "pocho_rider_location_rows_total" in text


# ---------------------------------------------------------------- carrying an order


async def _order(client: Client, db: asyncpg.Connection) -> tuple[Party, str]:
    """A customer and the order its accepted offer became."""
    cust = await customer(client)
    v = await vendor(client, db)
    req = (await cust.ok("request:create", request_payload()))["request"]
    offer = (await v.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]
    order = (await cust.ok("offer:accept", {"offerId": offer["id"]}))["order"]
    return cust, order["id"]


async def test_the_customer_sees_the_carrying_rider_move_with_an_eta(
    server: Server, client: Client, db: asyncpg.Connection
) -> None:
    cust, order_id = await _order(client, db)
    cust.listen("rider:location")
    # Until `order:watch` joins it, put the customer's socket in the order's room directly.
    await server.svc.sio.enter_room(cust.sio.get_sid("/customer"), order_room(order_id), namespace="/customer")
    r = await rider(client)
    rid = rider_id(r)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    assert await server.svc.riders.last_location(rid, order_id) is None

    first = cust.next("rider:location")
    drop = (LAGOS[0] + 0.0895, LAGOS[1])  # 9.95 km north
    server.svc.actors.tell(RIDER_KIND, rid, Carrying(order_id, *drop))
    seen = await first  # where the rider is known to be, at once
    assert seen["orderId"] == order_id and (seen["lat"], seen["lng"]) == LAGOS
    assert seen["etaMinutes"] == 40  # 10 km at the 15 km/h floor: no speed known yet
    assert await available(server) == []  # carrying: not available

    moved = cust.next("rider:location")
    p = ping(LAGOS[0] + 0.001, heading=12.5, speedKmh=30.0)
    assert await r.ok("location", p) == {"online": True}
    got = await moved
    assert got == {
        "orderId": order_id,
        "lat": p["lat"],
        "lng": p["lng"],
        "heading": 12.5,
        "etaMinutes": got["etaMinutes"],
        "recordedAt": got["recordedAt"],
    }
    assert got["etaMinutes"] == 20  # 9.84 km at 30 km/h
    assert got["recordedAt"] == iso(datetime.fromisoformat(p["recordedAt"]))
    assert await server.svc.riders.last_location(rid, order_id) == got
    assert await server.svc.riders.last_location(rid, str(uuid.uuid4())) is None

    await eventually(lambda: server.svc.riders.history.written >= 1, what="the flush")
    rows = await history(db, rid)
    assert [str(row["order_id"]) for row in rows] == [order_id]


async def test_pings_reach_only_that_orders_customer(server: Server, client: Client, db: asyncpg.Connection) -> None:
    cust, order_id = await _order(client, db)
    other, other_order = await _order(client, db)
    for party, oid in ((cust, order_id), (other, other_order)):
        party.listen("rider:location")
        await server.svc.sio.enter_room(party.sio.get_sid("/customer"), order_room(oid), namespace="/customer")
    r = await rider(client)
    rid = rider_id(r)
    await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
    first = cust.next("rider:location")
    server.svc.actors.tell(RIDER_KIND, rid, Carrying(order_id, *LAGOS))
    await first
    await r.ok("location", ping(LAGOS[0] + 0.0005))
    await cust.nth("rider:location", 2)
    # Anything sent to the other customer was queued on its socket before the rider's ack, so
    # it would arrive before the answer to the other customer's next command.
    assert await other.err("request:watch", {"requestId": str(uuid.uuid4())}) == "not_found"
    assert other.events["rider:location"] == []


# ---------------------------------------------------------------- commands the order service answers


async def test_assignment_and_delivery_commands_validate_before_the_order_service(
    server: Server, client: Client
) -> None:
    r = await rider(client)
    assert await r.err("assignment:accept", {}) == "invalid"
    assert await r.err("assignment:decline", {"orderId": ""}) == "invalid"
    assert await r.err("order:update", {"orderId": "o1", "status": "READY"}) == "invalid"  # not a rider's status
    reply = await r.call("order:update", {"orderId": "o1", "status": "DELIVERED"})
    assert reply["ok"] is False and reply["error"]["code"] == "invalid" and "deliveryCode" in reply["error"]["details"]
