"""GET /api/v1/analytics/overview over a known stored history: every figure, local days in the
asked time zone, who may see what (a vendor never sees another vendor's rows), bad input, and
live negotiation and order writes reaching the figures through the refresh loop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.conftest import Server, StartServer
from tests.e2e.util import accepted_order, customer
from tests.e2e.util import vendor as live_vendor
from tests.helpers import Client, eventually
from tests.integration import analytics_data as d
from tests.integration.test_catalogue import account

PATH = "/api/v1/analytics/overview"
LAGOS_WINDOW = "from=2026-03-10&to=2026-03-11&tz=Africa/Lagos"
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)


def close(value: float | None, expected: float, rel: float = 0.05) -> bool:
    return value is not None and abs(value - expected) <= rel * expected


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    """The node the `client` talks to, refreshing the rollups every 50 ms."""
    return await start_server(analytics_refresh_seconds=0.05)


@pytest.fixture
async def history(client: Client, db: asyncpg.Connection) -> dict[str, Any]:
    """Four requests over two Lagos days, two vendors (A and B), two orders."""
    cust = (await client.register("CUSTOMER"))["user"]["id"]
    a, b = await d.vendor(client, db, "A"), await d.vendor(client, db, "B")
    r1 = await d.request(db, cust, "nigerian", T0, "ACCEPTED")
    oa1 = await d.offer(db, r1, a, d.at(T0, seconds=60), "ACCEPTED", rounds=2)
    await d.offer(db, r1, b, d.at(T0, seconds=120), "REJECTED")
    confirmed = d.at(T0, minutes=6)
    await d.order(
        db,
        r1,
        oa1,
        cust,
        a,
        300_000,
        d.at(T0, minutes=5),
        [("CONFIRMED", confirmed), ("PREPARING", d.at(T0, minutes=10)), ("DELIVERED", d.at(confirmed, minutes=30))],
    )
    t2 = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 00:30 on 11 March in Lagos
    r2 = await d.request(db, cust, "pizza", t2, "ACCEPTED")
    ob2 = await d.offer(db, r2, b, d.at(t2, seconds=30), "ACCEPTED")
    await d.order(db, r2, ob2, cust, b, 500_000, d.at(t2, minutes=10), [("CANCELED", d.at(t2, minutes=12))])
    r3 = await d.request(db, cust, "nigerian", datetime(2026, 3, 11, 12, tzinfo=UTC), "EXPIRED")
    await d.offer(db, r3, a, datetime(2026, 3, 11, 12, 1, 30, tzinfo=UTC), "EXPIRED")
    await d.request(db, cust, "nigerian", datetime(2026, 3, 11, 13, tzinfo=UTC), "CANCELLED")
    _, admin_token = await account(client, db, "ADMIN")
    return {"a": a, "b": b, "admin": admin_token, "customer": cust}


async def overview(client: Client, token: str, query: str = LAGOS_WINDOW, want: int = 200) -> dict[str, Any]:
    status, body = await client.call("GET", f"{PATH}?{query}", token=token)
    assert status == want, body
    return dict(body)


async def settled(client: Client, token: str, query: str = LAGOS_WINDOW) -> dict[str, Any]:
    """The marketplace overview once the refresh loop has taken in the whole stored history."""
    seen: dict[str, Any] = {}

    async def ready() -> bool:
        seen.update(await overview(client, token, query))
        return bool(seen["orders"] == 2 and seen["requests"]["created"] == 4 and seen["offers"]["placed"] == 4)

    await eventually(ready, what="the rollups to take in the history")
    return seen


async def test_marketplace_figures_for_an_admin(client: Client, history: dict[str, Any]) -> None:
    body = await settled(client, history["admin"])
    assert body["scope"] == {"vendorId": None}
    assert (body["from"], body["to"], body["tz"]) == ("2026-03-10", "2026-03-11", "Africa/Lagos")
    assert body["grossOrderValueKobo"] == 300_000  # the canceled order is not gross value
    assert body["ordersByStatus"]["DELIVERED"] == 1 and body["ordersByStatus"]["CANCELED"] == 1
    assert sum(body["ordersByStatus"].values()) == 2
    assert body["requests"] == {"created": 4, "accepted": 2, "expired": 1, "cancelled": 1}
    assert body["offers"] == {"placed": 4, "accepted": 2} and body["offerAcceptanceRate"] == 0.5
    assert close(body["medianTimeToFirstOfferSeconds"], 60)  # firsts: 60, 30, 90 s
    assert body["medianNegotiationRounds"] == 0  # accepted offers' rounds: 2 and 0 (lower median)
    assert close(body["deliveryMinutes"]["median"], 30) and close(body["deliveryMinutes"]["p90"], 30)
    assert body["topCategories"] == [
        {"category": "nigerian", "orders": 1, "grossOrderValueKobo": 300_000},
        {"category": "pizza", "orders": 1, "grossOrderValueKobo": 0},
    ]
    # Local days: the 23:30 UTC request and its order belong to 11 March in Lagos.
    days = {x["date"]: x for x in body["daily"]}
    assert list(days) == ["2026-03-10", "2026-03-11"]
    assert (days["2026-03-10"]["requestsCreated"], days["2026-03-10"]["orders"]) == (1, 1)
    assert (days["2026-03-11"]["requestsCreated"], days["2026-03-11"]["orders"]) == (3, 1)
    assert days["2026-03-11"]["requestsExpired"] == 1 and days["2026-03-11"]["canceled"] == 1
    assert body["refreshedAt"] is not None

    # In UTC the same request falls on 10 March, and a window of one day leaves out the 11th.
    utc = await overview(client, history["admin"], "from=2026-03-10&to=2026-03-10&tz=UTC")
    assert utc["requests"]["created"] == 2 and utc["orders"] == 2
    assert [x["date"] for x in utc["daily"]] == ["2026-03-10"]
    assert close(utc["medianTimeToFirstOfferSeconds"], 30) and utc["offers"]["placed"] == 3  # 60, 30: lower median


async def test_a_vendor_sees_only_its_own_rows(client: Client, history: dict[str, Any]) -> None:
    a, b = history["a"], history["b"]
    await settled(client, history["admin"])
    mine = await overview(client, a.token)
    assert mine["scope"] == {"vendorId": str(a.id)}
    assert mine["orders"] == 1 and mine["grossOrderValueKobo"] == 300_000
    assert mine["ordersByStatus"]["CANCELED"] == 0 and mine["ordersByStatus"]["DELIVERED"] == 1
    assert mine["requests"] == {"created": 2, "accepted": 1, "expired": 1, "cancelled": 0}  # bid on r1, r3
    assert mine["offers"] == {"placed": 2, "accepted": 1}
    assert close(mine["medianTimeToFirstOfferSeconds"], 60)  # its own firsts: 60 and 90 s
    assert mine["medianNegotiationRounds"] == 2
    assert close(mine["deliveryMinutes"]["median"], 30)
    assert [c["category"] for c in mine["topCategories"]] == ["nigerian"]

    theirs = await overview(client, b.token)
    assert theirs["orders"] == 1 and theirs["grossOrderValueKobo"] == 0 and theirs["ordersByStatus"]["CANCELED"] == 1
    assert theirs["requests"] == {"created": 2, "accepted": 1, "expired": 0, "cancelled": 0}  # bid on r1, r2
    assert close(theirs["medianTimeToFirstOfferSeconds"], 30)  # its firsts: 120 and 30 s
    assert theirs["medianNegotiationRounds"] == 0
    assert theirs["deliveryMinutes"] == {"median": None, "p90": None}
    assert [c["category"] for c in theirs["topCategories"]] == ["pizza"]

    # Its own id is fine; another vendor's is refused; an admin may look at either.
    assert (await overview(client, a.token, f"{LAGOS_WINDOW}&vendorId={a.id}"))["orders"] == 1
    await overview(client, b.token, f"{LAGOS_WINDOW}&vendorId={a.id}", want=403)
    as_admin = await overview(client, history["admin"], f"{LAGOS_WINDOW}&vendorId={b.id}")
    assert {k: v for k, v in as_admin.items() if k != "refreshedAt"} == {
        k: v for k, v in theirs.items() if k != "refreshedAt"
    }


async def test_refreshing_again_counts_nothing_twice(client: Client, server: Server, history: dict[str, Any]) -> None:
    def figures(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "refreshedAt"}

    before = figures(await settled(client, history["admin"]))
    await server.svc.analytics.refresh(full=True)  # every hour recomputed from the tables
    await server.svc.analytics.refresh()
    assert figures(await overview(client, history["admin"])) == before
    mine = figures(await overview(client, history["a"].token))
    await server.svc.analytics.refresh(full=True)
    assert figures(await overview(client, history["a"].token)) == mine


async def test_who_may_ask_and_bad_input(client: Client, history: dict[str, Any]) -> None:
    cust = await client.register("CUSTOMER")
    rider = await client.register("RIDER")
    no_profile = await client.register("VENDOR")
    for token in (cust["tokens"]["accessToken"], rider["tokens"]["accessToken"], no_profile["tokens"]["accessToken"]):
        assert (await client.call("GET", f"{PATH}?{LAGOS_WINDOW}", token=token))[0] == 403
    assert (await client.call("GET", f"{PATH}?{LAGOS_WINDOW}"))[0] == 401
    admin = history["admin"]
    for query, field in (
        ("from=2026-03-10&to=2026-03-11&tz=Mars/Olympus", "tz"),
        ("from=10-03-2026", "from"),
        ("from=2026-03-11&to=2026-03-10", "to"),
        ("from=2025-01-01&to=2026-03-10", "to"),
        ("vendorId=nope", "vendorId"),
    ):
        status, body = await client.call("GET", f"{PATH}?{query}", token=admin)
        assert status == 400 and body["error"]["code"] == "invalid" and field in body["error"]["details"], body
    # Without from/to: the 30 days ending today, each present (zeros where nothing happened).
    body = await overview(client, admin, "tz=Africa/Lagos")
    assert len(body["daily"]) == 30 and body["orders"] == 0 and body["offerAcceptanceRate"] is None


async def test_live_writes_reach_the_figures(client: Client, server: Server, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    vend = await live_vendor(client, db)
    order = await accepted_order(cust, vend, category="suya")
    await server.svc.orders.confirm_payment(order["id"], reference="ref-1")
    today = "tz=UTC"

    async def counted() -> bool:
        body = await overview(client, vend.token, today)
        return bool(body["orders"] == 1 and body["ordersByStatus"]["CONFIRMED"] == 1)

    await eventually(counted, what="the live order in the vendor's figures")
    body = await overview(client, vend.token, today)
    assert body["requests"]["created"] == 1 and body["requests"]["accepted"] == 1
    assert body["offers"] == {"placed": 1, "accepted": 1} and body["grossOrderValueKobo"] == 300_000
    assert body["topCategories"] == [{"category": "suya", "orders": 1, "grossOrderValueKobo": 300_000}]
    assert body["medianTimeToFirstOfferSeconds"] is not None
