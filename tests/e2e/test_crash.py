"""Acked means committed: SIGKILL the server mid-negotiation, restart, nothing acked is lost
and expiry deadlines still fire (the sweeper for what is due, a re-armed timer for the rest).
SIGTERM mid-negotiation stops the node cleanly: exit code 0, every background loop ended
without an error, nothing acked lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from pocho_rt.auth.passwords import hash_password
from pocho_rt.auth.tokens import TokenService
from scripts.sio_lite import LiteClient
from tests.e2e.util import LAGOS, request_payload
from tests.helpers import eventually
from tests.nodes import SECRET, Node


@pytest.fixture
async def node_factory(database_url: str, redis_url: str, clean: None) -> AsyncIterator[Any]:
    nodes: list[Node] = []

    def make(**env: str) -> Node:
        node = Node(database_url, redis_url, **env)
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.stop()
        n.log.close()


async def _users(db: asyncpg.Connection) -> tuple[str, str]:
    tokens = TokenService(SECRET, 3600)
    pw = await hash_password("crash-test-pass")
    cust, vend = uuid.uuid4(), uuid.uuid4()
    for uid, role, phone in ((cust, "CUSTOMER", "+2348100000001"), (vend, "VENDOR", "+2348100000002")):
        await db.execute(
            "INSERT INTO users (id, phone, password_hash, role, first_name, last_name) "
            "VALUES ($1, $2, $3, $4, 'Crash', 'Test')",
            uid,
            phone,
            pw,
            role,
        )
    await db.execute(
        "INSERT INTO vendors (user_id, display_name, lat, lng, km_service_area, verified) "
        "VALUES ($1, 'Crash Kitchen', $2, $3, 10, true)",
        vend,
        *LAGOS,
    )
    return tokens.issue(str(cust), "CUSTOMER", "s1")[0], tokens.issue(str(vend), "VENDOR", "s2")[0]


async def test_sigkill_loses_nothing_acked(node_factory: Any, db: asyncpg.Connection) -> None:
    cust_token, vend_token = await _users(db)
    node = node_factory()
    await node.start()
    acked: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        cust = LiteClient(session, node.url, "/customer")
        vend = LiteClient(session, node.url, "/vendor")
        await cust.connect({"token": cust_token})
        await vend.connect({"token": vend_token})
        # Two requests whose deadlines (two hours) no test run reaches: both are OPEN at the kill.
        watched = (await cust.call("request:create", request_payload(expiresInMinutes=120)))["data"]["request"]
        untouched = (await cust.call("request:create", request_payload(expiresInMinutes=120)))["data"]["request"]
        offer = (await vend.call("offer:place", {"requestId": watched["id"], "priceKobo": 300_000}))["data"]["offer"]

        async def revise_forever() -> None:
            price = 300_000
            while True:
                price -= 1
                reply = await vend.call("offer:revise", {"offerId": offer["id"], "priceKobo": price})
                assert reply["ok"], reply
                acked.append(reply["data"]["offer"])
                if len(acked) == 200:
                    burst.set()

        burst = asyncio.Event()
        task = asyncio.ensure_future(revise_forever())
        await asyncio.wait_for(burst.wait(), 30)  # a burst of acked revisions, then the kill lands mid-stream
        node.kill()
        with pytest.raises((ConnectionError, TimeoutError, AssertionError, aiohttp.ClientError)):
            await asyncio.wait_for(task, 15)
        await cust.close()
        await vend.close()

    last = acked[-1]
    stored = await db.fetchrow("SELECT price_kobo, updated_at FROM offers WHERE id = $1", uuid.UUID(offer["id"]))
    # Every ack is durable: the stored price is the last acked one or a later (committed, unacked) one.
    assert stored["price_kobo"] <= last["priceKobo"]
    seqs = [
        r["seq"]
        for r in await db.fetch(
            "SELECT seq FROM negotiation_events WHERE request_id = $1 ORDER BY seq", uuid.UUID(watched["id"])
        )
    ]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 2 + len(acked)  # request:new, offer:new, then one event per acked revision
    prices = [
        r["p"]
        for r in await db.fetch(
            "SELECT (payload->'offer'->>'priceKobo')::bigint AS p FROM negotiation_events "
            "WHERE request_id = $1 AND kind = 'offer:updated' ORDER BY seq",
            uuid.UUID(watched["id"]),
        )
    ]
    assert prices[: len(acked)] == [a["priceKobo"] for a in acked]

    # While no server runs, the untouched request's deadline passes; the watched one's stays ahead.
    watched_id, untouched_id = uuid.UUID(watched["id"]), uuid.UUID(untouched["id"])
    status = "SELECT status FROM meal_requests WHERE id = $1"
    assert await db.fetchval(status, untouched_id) == await db.fetchval(status, watched_id) == "OPEN"
    await db.execute("UPDATE meal_requests SET expires_at = now() - interval '1 second' WHERE id = $1", untouched_id)

    # Restart. The sweeper runs once at start and then sleeps for the rest of the test, so what
    # expires the watched request below can only be the timer its activation re-arms.
    node2 = node_factory(POCHO_SWEEP_SECONDS="3600")
    await node2.start()

    async def swept() -> bool:  # the sweeper works in the server process: no event to await
        return await db.fetchval(status, untouched_id) == "EXPIRED"

    await eventually(swept, what="the sweeper to expire the request that was due")
    # The watched request comes due a moment from now, after the sweep, before anyone looks at it.
    await db.execute("UPDATE meal_requests SET expires_at = now() + interval '1 second' WHERE id = $1", watched_id)
    async with aiohttp.ClientSession() as session:
        cust = LiteClient(session, node2.url, "/customer")
        expired: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        cust.handlers["request:expired"] = lambda d: expired.done() or expired.set_result(d)
        await cust.connect({"token": cust_token})
        snap = await cust.call("request:watch", {"requestId": watched["id"], "sinceSeq": 0})
        assert snap["ok"] and snap["data"]["offers"][0]["priceKobo"] == stored["price_kobo"]
        # The watch is the first message the actor handles: whatever the clock says, it still sees OPEN.
        assert snap["data"]["request"]["status"] == "OPEN"
        assert [e["seq"] for e in snap["data"]["events"]] == seqs[1:]
        assert (await asyncio.wait_for(expired, 20))["requestId"] == watched["id"]  # the re-armed timer fired
        await cust.close()
    assert await db.fetchval(status, watched_id) == "EXPIRED"
    assert await db.fetchval("SELECT status FROM offers WHERE id = $1", uuid.UUID(offer["id"])) == "EXPIRED"


async def test_sigterm_stops_cleanly_with_nothing_acked_lost(node_factory: Any, db: asyncpg.Connection) -> None:
    cust_token, vend_token = await _users(db)
    node = node_factory(LOG_LEVEL="INFO")
    await node.start()
    acked: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        cust = LiteClient(session, node.url, "/customer")
        vend = LiteClient(session, node.url, "/vendor")
        await cust.connect({"token": cust_token})
        await vend.connect({"token": vend_token})
        request = (await cust.call("request:create", request_payload(expiresInMinutes=120)))["data"]["request"]
        offer = (await vend.call("offer:place", {"requestId": request["id"], "priceKobo": 300_000}))["data"]["offer"]
        burst = asyncio.Event()

        async def revise_until_refused() -> None:
            price = 300_000
            while True:
                price -= 1
                reply = await vend.call("offer:revise", {"offerId": offer["id"], "priceKobo": price})
                if not reply["ok"]:
                    return  # refused while shutting down: not acked, so nothing to keep
                acked.append(reply["data"]["offer"])
                if len(acked) == 100:
                    burst.set()

        task = asyncio.ensure_future(revise_until_refused())
        await asyncio.wait_for(burst.wait(), 30)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)  # mid-stream: revisions are queued and in flight
        returncode = await asyncio.to_thread(node.proc.wait, 30)  # the guard only; a clean stop takes seconds
        with contextlib.suppress(ConnectionError, TimeoutError, aiohttp.ClientError):
            await asyncio.wait_for(task, 15)
        await cust.close()
        await vend.close()

    assert returncode == 0
    log = node.log_text()
    for bad in ("Traceback", "background loop died", "background task failed", "Task was destroyed"):
        assert bad not in log, log[-3000:]
    assert "background loop finished" in log  # the writer ended by itself after its last flush
    stored = await db.fetchval("SELECT price_kobo FROM offers WHERE id = $1", uuid.UUID(offer["id"]))
    assert stored <= acked[-1]["priceKobo"]  # the last ack (or a later committed revision) is stored
    prices = [
        r["p"]
        for r in await db.fetch(
            "SELECT (payload->'offer'->>'priceKobo')::bigint AS p FROM negotiation_events "
            "WHERE request_id = $1 AND kind = 'offer:updated' ORDER BY seq",
            uuid.UUID(request["id"]),
        )
    ]
    assert prices[: len(acked)] == [a["priceKobo"] for a in acked]
