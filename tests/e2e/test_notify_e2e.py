"""Notifications end to end (issue 10): real accounts, real Socket.IO connections, a node running
its own dispatcher against local FCM and Termii servers. A vendor whose app is closed hears of a
request near them by push; a customer with the app open gets the socket event and no push, and
the push once the app is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import Server, StartServer
from tests.e2e.util import Party, customer, request_payload, vendor
from tests.fakes.fcm import FakeFcm
from tests.fakes.termii import FakeTermii
from tests.helpers import Client, eventually
from tests.notify_support import DEVICES, device_token, providers, start

FAR = (9.0765, 7.3986)  # Abuja: no Lagos request is in its service area


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeFcm, FakeTermii]]:
    async with providers() as pair:
        yield pair


@pytest.fixture
async def server(start_server: StartServer, fakes: tuple[FakeFcm, FakeTermii]) -> Server:
    return await start(start_server, *fakes)


async def _device(client: Client, party: Party) -> str:
    token = device_token()
    status, _ = await client.call("PUT", DEVICES, {"token": token, "platform": "ANDROID"}, token=party.token)
    assert status == 204
    return token


async def _close_app(server: Server, party: Party) -> None:
    """Disconnect the party's socket and wait until this node no longer counts it online."""
    await party.sio.disconnect()

    async def gone() -> bool:
        return party.user["id"] not in await server.svc.notify.presence.online({party.user["id"]})

    await eventually(gone, what="the socket to leave")


def _to(fcm: FakeFcm, token: str) -> list[dict[str, Any]]:
    return [m for m in fcm.delivered if m["token"] == token]


async def test_a_vendor_with_the_app_closed_gets_a_push_for_a_request_near_them(
    client: Client, server: Server, db: asyncpg.Connection, fakes: tuple[FakeFcm, FakeTermii]
) -> None:
    fcm = fakes[0]
    near, far = await vendor(client, db), await vendor(client, db, lat=FAR[0], lng=FAR[1])
    near_token, far_token = await _device(client, near), await _device(client, far)
    await _close_app(server, near)
    await _close_app(server, far)
    cust = await customer(client)
    req = (await cust.ok("request:create", request_payload()))["request"]

    await eventually(lambda: bool(_to(fcm, near_token)), what="the push to the nearby vendor")
    [push] = _to(fcm, near_token)
    assert push["notification"] == {
        "title": "New request nearby",
        "body": "Someone 0.0 km away wants nigerian for about ₦2,000–₦5,000. Make an offer!",
    }
    assert push["data"]["event"] == "request.nearby" and push["data"]["request_id"] == req["id"]
    rows = await db.fetch(
        "SELECT user_id::text AS uid, status, outcome FROM notifications_outbox WHERE kind = 'request.nearby'"
    )
    assert [dict(r) for r in rows] == [{"uid": near.user["id"], "status": "sent", "outcome": "fcm"}]
    assert _to(fcm, far_token) == []  # outside its service area: no row at all


async def test_an_open_app_gets_the_socket_event_and_no_push_a_closed_one_the_push(
    client: Client, server: Server, db: asyncpg.Connection, fakes: tuple[FakeFcm, FakeTermii]
) -> None:
    fcm = fakes[0]
    cust = await customer(client)
    cust_token = await _device(client, cust)
    first, second = await vendor(client, db, name="Mama Put"), await vendor(client, db, name="Buka Hut")
    req = (await cust.ok("request:create", request_payload()))["request"]

    heard = cust.next("offer:new")
    await first.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000})
    assert (await heard)["offer"]["vendorName"] == "Mama Put"  # over the socket

    offers = "SELECT status, outcome FROM notifications_outbox WHERE kind = 'offer.new' ORDER BY id"

    async def settled(count: int) -> bool:
        rows = await db.fetch(offers)
        return len(rows) == count and all(r["status"] != "pending" for r in rows)

    await eventually(lambda: settled(1), what="the first offer's notification settled")
    assert [dict(r) for r in await db.fetch(offers)] == [{"status": "skipped", "outcome": "online"}]
    assert _to(fcm, cust_token) == []

    await _close_app(server, cust)
    await second.ok("offer:place", {"requestId": req["id"], "priceKobo": 280_000})
    await eventually(lambda: settled(2), what="the second offer's notification settled")
    assert [dict(r) for r in await db.fetch(offers)][1] == {"status": "sent", "outcome": "fcm"}
    [push] = _to(fcm, cust_token)
    assert push["notification"] == {
        "title": "New offer for your nigerian",
        "body": "Buka Hut offers nigerian for ₦2,800.",
    }
