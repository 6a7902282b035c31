"""Edges of the negotiation path: a deadline passed while the actor slept, and storage
too slow to keep up (bounded queue, `unavailable`, nothing acked lost)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg

from tests.conftest import StartServer
from tests.e2e.util import customer, request_payload, vendor
from tests.helpers import Client, eventually


async def test_command_after_deadline_is_expired(start_server: StartServer, db: asyncpg.Connection) -> None:
    server = await start_server(sweep_seconds=3600)  # no sweeper: activation alone must notice
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust = await customer(client)
            a = await vendor(client, db)
            rid = (await cust.ok("request:create", request_payload()))["request"]["id"]
            assert server.svc.actors.passivate("meal_request", rid)
            await db.execute(
                "UPDATE meal_requests SET expires_at = now() - interval '1 second' WHERE id = $1", uuid.UUID(rid)
            )
            expired = cust.next("request:expired")
            assert await a.err("offer:place", {"requestId": rid, "priceKobo": 300_000}) == "expired"
            assert (await expired)["requestId"] == rid  # the re-armed timer closed it right after
            assert await a.err("offer:place", {"requestId": rid, "priceKobo": 300_000}) == "conflict"
        finally:
            await client.close()


async def test_slow_storage_refuses_past_the_bound_and_loses_nothing(
    start_server: StartServer, db: asyncpg.Connection, database_url: str
) -> None:
    # One revision = 4 rows (shard fence, request, offer, event): a queue of 8 rows holds two waiting revisions.
    server = await start_server(writer_queue_max=8, writer_flush_ms=0)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust = await customer(client)
            vendors = [await vendor(client, db) for _ in range(4)]
            rid = (await cust.ok("request:create", request_payload()))["request"]["id"]
            offers = [
                (await v.ok("offer:place", {"requestId": rid, "priceKobo": 300_000 + i}))["offer"]["id"]
                for i, v in enumerate(vendors)
            ]
            writer = server.svc.writer

            blocker = await asyncpg.connect(database_url)
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT 1 FROM meal_requests WHERE id = $1 FOR UPDATE", uuid.UUID(rid))

            def revise(i: int) -> asyncio.Future[dict[str, Any]]:
                return asyncio.ensure_future(
                    vendors[i].call("offer:revise", {"offerId": offers[i], "priceKobo": 200_000 + i})
                )

            first = asyncio.ensure_future(
                vendors[0].call(  # taken by the writer, which now waits on our lock
                    "offer:revise", {"offerId": offers[0], "priceKobo": 200_000, "clientMsgId": "rev-0"}
                )
            )

            async def writer_blocked() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%INSERT INTO \"meal_requests\"%'"
                    )
                )

            await eventually(writer_blocked, what="the writer to wait on the lock")
            # A retry of the blocked command from the vendor's second phone: it must not be told
            # ok before the first attempt is committed.
            second_phone = await client.connect("/vendor", vendors[0].token)
            retry = asyncio.ensure_future(
                second_phone.call(
                    "offer:revise",
                    {"offerId": offers[0], "priceKobo": 200_000, "clientMsgId": "rev-0"},
                    namespace="/vendor",
                    timeout=10,
                )
            )
            queued = [revise(1), revise(2)]

            await eventually(lambda: writer.queued_rows() == 8, what="two revisions to queue")
            refused = await vendors[3].call("offer:revise", {"offerId": offers[3], "priceKobo": 1})
            assert refused["ok"] is False and refused["error"]["code"] == "unavailable"
            assert not first.done() and not retry.done() and not any(q.done() for q in queued)  # no early ack

            await tx.rollback()
            await blocker.close()
            for i, fut in enumerate([first, *queued]):
                reply = await asyncio.wait_for(fut, 10)
                assert reply["ok"] is True and reply["data"]["offer"]["priceKobo"] == 200_000 + i
            assert await asyncio.wait_for(retry, 10) == await first  # the first answer, applied once
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM negotiation_events WHERE request_id = $1 "
                    "AND kind = 'offer:updated' AND (payload->'offer'->>'priceKobo')::int = 200000",
                    uuid.UUID(rid),
                )
                == 1
            )
            stored = dict(
                await db.fetch("SELECT id::text, price_kobo FROM offers WHERE request_id = $1", uuid.UUID(rid))
            )
            assert [stored[o] for o in offers] == [200_000, 200_001, 200_002, 300_003]
        finally:
            await client.close()


async def test_quotas_and_text_hygiene(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    a = await vendor(client, db)
    for _ in range(10):
        await cust.ok("request:create", request_payload())
    assert await cust.err("request:create", request_payload()) == "limit_reached"
    rid = await db.fetchval("SELECT id::text FROM meal_requests LIMIT 1")
    nul = await a.call("offer:place", {"requestId": rid, "priceKobo": 300_000, "details": "jollof\x00"})
    assert nul["ok"] is False and nul["error"]["details"] == {"details": "must not contain NUL characters"}
    assert await db.fetchval("SELECT count(*) FROM offers") == 0
    # An id that names no request leaves no actor behind.
    actors = client.server.svc.actors
    ghost = str(uuid.uuid4())
    assert await cust.err("request:watch", {"requestId": ghost}) == "not_found"
    assert actors.get("meal_request", ghost) is None
