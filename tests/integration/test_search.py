"""GET /api/v1/search: PostgreSQL (default) and Meilisearch (a fake, over real HTTP) paths,
and the generic outbox (claim / retry / dead-letter) that feeds Meilisearch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from persistence import outbox
from persistence.outbox import SEARCH_OUTBOX, OutboxWorker
from tests.conftest import Server, StartServer
from tests.fakes.local import running
from tests.fakes.meilisearch import FakeMeilisearch
from tests.helpers import Client, eventually
from tests.integration.test_catalogue import account, err, new_item, new_vendor


async def verified_vendor(
    client: Client, db: asyncpg.Connection, items: list[dict[str, Any]], **fields: Any
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(owner token, vendor, items) of a vendor verified by the admin key, with one menu."""
    token, vendor = await new_vendor(client, db, **fields)
    status, _ = await client.call("POST", f"/admin/vendors/{vendor['id']}/verify", headers=client.admin_headers())
    assert status == 200
    _, menu = await client.call("POST", f"/api/v1/vendors/{vendor['id']}/menus", {"title": "Main"}, token=token)
    made = []
    for it in items:
        status, body = await client.call("POST", f"/api/v1/menus/{menu['id']}/items", it, token=token)
        assert status == 201, body
        made.append(body)
    return token, vendor, made


async def search(client: Client, token: str, query: str) -> dict[str, Any]:
    status, body = await client.call("GET", f"/api/v1/search?{query}", token=token)
    assert status == 200, body
    return dict(body)


# ---------------------------------------------------------------- PostgreSQL search


async def test_typo_tolerant_search(client: Client, db: asyncpg.Connection) -> None:
    _, vendor, (jollof, _) = await verified_vendor(
        client,
        db,
        [
            {"name": "Jollof Rice", "priceKobo": 350000, "cuisineTag": "nigerian", "prepMinutes": 20},
            {"name": "Beef Suya", "priceKobo": 250000},
        ],
    )
    _, customer = await account(client, db, "CUSTOMER")
    for q in ("jolof", "Jollof", "jollof rice", "JOLOF RICE", "jollf"):
        body = await search(client, customer, f"q={q}")
        assert [i["id"] for i in body["menuItems"]] == [jollof["id"]], (q, body)
    hit = body["menuItems"][0]
    assert hit == {
        "id": jollof["id"],
        "menuId": jollof["menuId"],
        "vendorId": vendor["id"],
        "vendorName": "Mama Bisi Kitchen",
        "name": "Jollof Rice",
        "priceKobo": 350000,
        "description": None,
        "cuisineTag": "nigerian",
        "prepMinutes": 20,
        "distanceKm": None,
    }
    body = await search(client, customer, "q=mama%20bsi")
    assert [v["id"] for v in body["vendors"]] == [vendor["id"]]
    assert body["vendors"][0]["displayName"] == "Mama Bisi Kitchen" and body["vendors"][0]["distanceKm"] is None
    body = await search(client, customer, "q=nigerian")  # a category finds the vendor, a tag the item
    assert [v["id"] for v in body["vendors"]] == [vendor["id"]]
    assert [i["id"] for i in body["menuItems"]] == [jollof["id"]]
    assert await search(client, customer, "q=pizza") == {"vendors": [], "menuItems": []}


async def test_unverified_vendor_and_unavailable_items_never_appear(client: Client, db: asyncpg.Connection) -> None:
    _, customer = await account(client, db, "CUSTOMER")
    hidden_token, hidden = await new_vendor(client, db, displayName="Jollof Hidden")
    await new_item(client, hidden_token, hidden["id"], name="Jollof Rice Special")
    token, _shown, (item,) = await verified_vendor(client, db, [{"name": "Jollof Rice", "priceKobo": 1000}])
    body = await search(client, customer, "q=jollof")
    assert [v["id"] for v in body["vendors"]] == []  # "Mama Bisi Kitchen" does not match; hidden is unverified
    assert [i["id"] for i in body["menuItems"]] == [item["id"]]
    status, _ = await client.call("PATCH", f"/api/v1/menu-items/{item['id']}", {"isAvailable": False}, token=token)
    assert status == 200
    assert await search(client, customer, "q=jollof") == {"vendors": [], "menuItems": []}
    # verifying the hidden vendor makes it and its items searchable at once
    await client.call("POST", f"/admin/vendors/{hidden['id']}/verify", headers=client.admin_headers())
    body = await search(client, customer, "q=jollof")
    assert [v["id"] for v in body["vendors"]] == [hidden["id"]]
    assert [i["vendorId"] for i in body["menuItems"]] == [hidden["id"]]


async def test_nearer_of_equally_relevant_ranks_first(client: Client, db: asyncpg.Connection) -> None:
    _, customer = await account(client, db, "CUSTOMER")
    item = [{"name": "Jollof Rice", "priceKobo": 300000}]
    _, ikeja, (ikeja_item,) = await verified_vendor(
        client, db, item, displayName="Jollof Palace", lat=6.6018, lng=3.3515
    )
    _, lekki, (lekki_item,) = await verified_vendor(
        client, db, item, displayName="Jollof Palace", lat=6.4474, lng=3.4723
    )
    for (lat, lng), first, second in (((6.60, 3.35), ikeja, lekki), ((6.45, 3.47), lekki, ikeja)):
        body = await search(client, customer, f"q=jolof&lat={lat}&lng={lng}")
        assert [v["id"] for v in body["vendors"]] == [first["id"], second["id"]]
        assert [i["vendorId"] for i in body["menuItems"]] == [first["id"], second["id"]]
        dists = [i["distanceKm"] for i in body["menuItems"]]
        assert dists[0] < 1.0 < 20.0 < dists[1] < 25.0, dists
        assert [v["distanceKm"] for v in body["vendors"]] == dists
    assert {ikeja_item["id"], lekki_item["id"]} == {i["id"] for i in body["menuItems"]}
    body = await search(client, customer, "q=jolof&limit=1&lat=6.45&lng=3.47")
    assert len(body["menuItems"]) == 1 and len(body["vendors"]) == 1


async def test_more_relevant_beats_slightly_nearer(client: Client, db: asyncpg.Connection) -> None:
    _, customer = await account(client, db, "CUSTOMER")
    _, _, (exact,) = await verified_vendor(client, db, [{"name": "Jollof Rice", "priceKobo": 1}], lat=6.50, lng=3.38)
    _, _, (weak,) = await verified_vendor(
        client,
        db,
        [{"name": "Rice and Stew", "priceKobo": 1, "description": "served with jollof sauce"}],
        lat=6.5001,
        lng=3.3801,
    )
    body = await search(client, customer, "q=jollof%20rice&lat=6.5001&lng=3.3801")
    assert [i["id"] for i in body["menuItems"]][:1] == [exact["id"]]
    assert weak["id"] in [i["id"] for i in body["menuItems"]]


@pytest.mark.parametrize(
    "query,field",
    [
        ("", "q"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("q=" + "x" * 101, "q"),
        ("q=rice&limit=0", "limit"),
        ("q=rice&limit=51", "limit"),
        ("q=rice&limit=ten", "limit"),
        ("q=rice&lat=6.5", "lng"),
        ("q=rice&lng=3.3", "lat"),
        ("q=rice&lat=91&lng=3", "lat"),
        ("q=rice&lat=6&lng=181", "lng"),
        ("q=rice&lat=abc&lng=3", "lat"),
        ("q=rice&lat=nan&lng=3", "lat"),
    ],
)
async def test_search_validation(client: Client, db: asyncpg.Connection, query: str, field: str) -> None:
    _, customer = await account(client, db, "CUSTOMER")
    status, body = await client.call("GET", f"/api/v1/search?{query}", token=customer)
    assert status == 400 and field in err(body, "invalid")["details"], body


async def test_search_needs_a_token(client: Client, db: asyncpg.Connection) -> None:
    status, body = await client.call("GET", "/api/v1/search?q=rice")
    assert status == 401 and err(body, "unauthorized")
    for role in ("VENDOR", "RIDER", "ADMIN"):
        _, token = await account(client, db, role)
        assert (await client.call("GET", "/api/v1/search?q=rice&limit=50", token=token))[0] == 200


# ---------------------------------------------------------------- Meilisearch


@pytest.fixture
async def meili() -> AsyncIterator[FakeMeilisearch]:
    async with running(FakeMeilisearch(master_key="meili-test-key")) as fake:
        yield fake


@pytest.fixture
async def meili_client(start_server: StartServer, meili: FakeMeilisearch) -> AsyncIterator[Client]:
    server = await start_server(meilisearch_url=meili.url, meilisearch_api_key=meili.master_key)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield Client(session, server)


def worker_of(server: Server) -> OutboxWorker:
    worker = server.svc.search_outbox
    assert isinstance(worker, OutboxWorker)
    return worker


async def all_done(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval("SELECT count(*) > 0 AND bool_and(status = 'done') FROM search_outbox"))


async def test_meilisearch_configured_on_startup(meili_client: Client, meili: FakeMeilisearch) -> None:
    await asyncio.wait_for(worker_of(meili_client.server).ready.wait(), 10)
    assert set(meili.indexes) == {"vendors", "menu_items"}
    assert meili.indexes["vendors"]["primaryKey"] == "id"
    assert "_geo" in meili.indexes["menu_items"]["settings"]["sortableAttributes"]
    assert "isAvailable" in meili.indexes["menu_items"]["settings"]["filterableAttributes"]
    # a restart re-applies the same settings without failing (index already exists)
    from adapters.meilisearch import MeiliSearchIndex

    again = MeiliSearchIndex(meili.url, meili.master_key)
    await again.configure()
    await again.close()


async def test_search_through_meilisearch(meili_client: Client, meili: FakeMeilisearch, db: asyncpg.Connection) -> None:
    client = meili_client
    token, vendor, (jollof, suya) = await verified_vendor(
        client,
        db,
        [
            {"name": "Jollof Rice", "priceKobo": 350000, "cuisineTag": "nigerian"},
            {"name": "Beef Suya", "priceKobo": 250000},
        ],
    )
    await eventually(lambda: all_done(db), what="search outbox drained")
    assert set(meili.indexes["menu_items"]["docs"]) == {jollof["id"], suya["id"]}
    assert meili.indexes["vendors"]["docs"][vendor["id"]]["_geo"] == {"lat": vendor["lat"], "lng": vendor["lng"]}

    _, customer = await account(client, db, "CUSTOMER")
    before = len([r for r in meili.requests if r[1].endswith("/search")])
    body = await search(client, customer, "q=jolof&lat=6.5244&lng=3.3792")
    assert len([r for r in meili.requests if r[1].endswith("/search")]) == before + 2  # served by meilisearch
    assert [i["id"] for i in body["menuItems"]] == [jollof["id"]]
    hit = body["menuItems"][0]
    assert hit["vendorId"] == vendor["id"] and hit["vendorName"] == "Mama Bisi Kitchen"
    assert hit["priceKobo"] == 350000 and hit["distanceKm"] == 0.0
    assert "_geo" not in hit and "vendorVerified" not in hit
    body = await search(client, customer, "q=mama")
    assert [v["id"] for v in body["vendors"]] == [vendor["id"]] and body["vendors"][0]["distanceKm"] is None

    # an item made unavailable is deleted from the index
    await client.call("PATCH", f"/api/v1/menu-items/{jollof['id']}", {"isAvailable": False}, token=token)
    await eventually(lambda: all_done(db), what="item delete synced")
    assert set(meili.indexes["menu_items"]["docs"]) == {suya["id"]}
    assert (await search(client, customer, "q=jollof"))["menuItems"] == []


async def test_unverified_vendor_not_indexed_in_meilisearch(
    meili_client: Client, meili: FakeMeilisearch, db: asyncpg.Connection
) -> None:
    token, vendor = await new_vendor(meili_client, db)
    await new_item(meili_client, token, vendor["id"])
    await eventually(lambda: all_done(db), what="outbox drained")
    assert meili.indexes["vendors"]["docs"] == {} and meili.indexes["menu_items"]["docs"] == {}


async def test_meilisearch_failure_retries_and_never_loses_rows(
    meili_client: Client, meili: FakeMeilisearch, db: asyncpg.Connection
) -> None:
    client = meili_client
    worker = worker_of(client.server)
    await asyncio.wait_for(worker.ready.wait(), 10)
    # The next try is due minutes after a failure, not seconds: no row is retried (or due) behind
    # the test's back, however slowly the rows below fail one after the other.
    worker.backoff_base = 60.0
    meili.fail_writes = True
    _, vendor, (item,) = await verified_vendor(client, db, [{"name": "Jollof Rice", "priceKobo": 1000}])
    rows: list[asyncpg.Record] = []

    async def retried() -> bool:
        rows[:] = await db.fetch("SELECT *, next_attempt_at > now() AS later FROM search_outbox")
        return bool(rows) and all(r["attempts"] >= 1 for r in rows)

    await eventually(retried, what="failed attempts recorded")
    for r in rows:
        assert r["status"] == "pending" and r["later"], dict(r)
        assert "500" in r["last_error"]
    assert meili.indexes["menu_items"]["docs"] == {}

    # the index recovers: rows due again are delivered, none was lost
    meili.fail_writes = False
    await db.execute("UPDATE search_outbox SET next_attempt_at = now() WHERE status = 'pending'")
    worker.wakeup()
    await eventually(lambda: all_done(db), what="outbox drained after recovery")
    assert set(meili.indexes["menu_items"]["docs"]) == {item["id"]}
    assert set(meili.indexes["vendors"]["docs"]) == {vendor["id"]}


async def test_meilisearch_down_is_503(
    start_server: StartServer, meili: FakeMeilisearch, db: asyncpg.Connection
) -> None:
    server = await start_server(meilisearch_url=meili.url, meilisearch_api_key="wrong-key")
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        _, customer = await account(client, db, "CUSTOMER")
        status, body = await client.call("GET", "/api/v1/search?q=rice", token=customer)
        assert status == 503 and err(body, "unavailable")


# ---------------------------------------------------------------- the generic outbox


async def _rows(db: asyncpg.Connection, n: int) -> list[int]:
    return [
        await db.fetchval(
            "INSERT INTO search_outbox (entity, entity_id, op) VALUES ('vendor', $1, 'upsert') RETURNING id",
            uuid.uuid4(),
        )
        for _ in range(n)
    ]


async def test_claim_skips_locked_and_leased_rows(db: asyncpg.Connection, database_url: str) -> None:
    ids = await _rows(db, 5)
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():  # another worker holds the two oldest rows
            await other.fetch("SELECT id FROM search_outbox ORDER BY id LIMIT 2 FOR UPDATE")
            got = await outbox.claim(db, SEARCH_OUTBOX, 10, 30)
            assert [r["id"] for r in got] == ids[2:]
        again = await outbox.claim(db, SEARCH_OUTBOX, 10, 30)
        assert [r["id"] for r in again] == ids[:2]  # leased rows are not handed out twice
        assert await outbox.claim(db, SEARCH_OUTBOX, 10, 30) == []
    finally:
        await other.close()
    assert await outbox.complete(db, SEARCH_OUTBOX, ids) == 5
    assert await db.fetchval("SELECT count(*) FROM search_outbox WHERE status = 'done'") == 5


async def test_backoff_and_dead_letter(db: asyncpg.Connection) -> None:
    (row_id,) = await _rows(db, 1)
    delays = []
    for attempt in range(1, 4):
        changed = await outbox.fail(
            db, SEARCH_OUTBOX, {row_id: f"boom {attempt}"}, max_attempts=3, backoff_base=10, backoff_cap=25
        )
        row = await db.fetchrow("SELECT *, extract(epoch FROM next_attempt_at - now()) AS wait FROM search_outbox")
        assert [c["id"] for c in changed] == [row_id]
        assert row["attempts"] == attempt and row["last_error"] == f"boom {attempt}"
        delays.append(float(row["wait"]))
        assert row["status"] == ("dead" if attempt == 3 else "pending")
    assert 7 <= delays[0] <= 12.5 and 15 <= delays[1] <= 25 and delays[2] <= 25 * 1.25
    await db.execute("UPDATE search_outbox SET next_attempt_at = now()")
    assert await outbox.claim(db, SEARCH_OUTBOX, 10, 30) == []  # dead rows are kept, never retried
    assert await db.fetchval("SELECT count(*) FROM search_outbox") == 1


async def test_worker_retries_failed_rows_and_stops_cleanly(db: asyncpg.Connection, start_server: StartServer) -> None:
    server = await start_server()
    ids = await _rows(db, 3)
    seen: list[list[int]] = []

    async def handler(rows: list[asyncpg.Record]) -> dict[int, str]:
        seen.append([r["id"] for r in rows])
        return {ids[1]: "nope"}

    async def settled() -> bool:
        return bool(await db.fetchval("SELECT count(*) = 2 FROM search_outbox WHERE status = 'done'"))

    worker = OutboxWorker(server.svc.pool, SEARCH_OUTBOX, handler, poll_interval=0.05, backoff_base=60)
    loop = asyncio.ensure_future(worker.run())  # in a server, the supervisor owns this loop
    try:
        await eventually(settled, what="worker batch")
        await asyncio.wait_for(worker.stop(), 5)
        await asyncio.wait_for(loop, 5)  # run() returns by itself once stopped
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert seen[0] == ids
    row = await db.fetchrow("SELECT * FROM search_outbox WHERE id = $1", ids[1])
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"] == "nope"


async def test_search_outbox_is_pruned_without_meilisearch(start_server: Any, db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO search_outbox (entity, entity_id, op, created_at) "
        "VALUES ('vendor', gen_random_uuid(), 'upsert', now() - interval '2 hours'), "
        "('vendor', gen_random_uuid(), 'upsert', now())"
    )
    await start_server()  # prunes at start, then every few minutes

    async def pruned() -> bool:  # the prune runs in the server's background: no event to await
        return bool(await db.fetchval("SELECT count(*) = 1 FROM search_outbox"))

    await eventually(pruned, what="the old row to be pruned")
    assert await db.fetchval("SELECT count(*) FROM search_outbox WHERE created_at > now() - interval '1 hour'") == 1
    assert await db.fetchval("SELECT count(*) FROM search_outbox") == 1
