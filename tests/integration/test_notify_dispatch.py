"""The notification dispatcher against local FCM and Termii servers (their documented answers,
errors, timeouts and an expired OAuth token) and a real PostgreSQL: what is delivered, retried,
dead-lettered, coalesced, held for quiet hours; exactly one delivery per row and channel with
two dispatchers on one database, also when one dies with its HTTP call in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from persistence.db import create_pool
from persistence.pii import PiiCodec, new_key_text
from persistence.pii_rotation import rotate_texts
from pocho_rt.config import DEV_PII_INDEX_KEY, DEV_PII_KEY
from tests.conftest import Server, StartServer
from tests.fakes.fcm import FakeFcm
from tests.fakes.termii import FakeTermii
from tests.helpers import Client, eventually
from tests.notify_support import dispatcher, make_due, providers, pushed, queue, row, start, with_device

PREPARING = {"order_id": "ab12cd34", "vendor_name": "Mama Put"}


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeFcm, FakeTermii]]:
    async with providers() as pair:
        yield pair


@pytest.fixture
async def server(start_server: StartServer, fakes: tuple[FakeFcm, FakeTermii]) -> Server:
    """A node that does not dispatch itself: each test runs the dispatchers it needs."""
    return await start(start_server, *fakes, notify_dispatch=False)


@pytest.fixture
def fcm(fakes: tuple[FakeFcm, FakeTermii]) -> FakeFcm:
    return fakes[0]


@pytest.fixture
def termii(fakes: tuple[FakeFcm, FakeTermii]) -> FakeTermii:
    return fakes[1]


async def test_a_push_reaches_every_device_and_a_gone_token_is_deleted(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm
) -> None:
    gone, bad_shape = "g0ne:APA91bUnregisteredTokenOfAnOldPhone", "not-an-fcm-token-at-all-x"
    fcm.unregistered.add(gone)
    reg, tokens = await with_device(client, "CUSTOMER", "k33p:APA91bTheCurrentPhoneToken1234", gone, bad_shape)
    uid = reg["user"]["id"]
    rid = await queue(db, uid, "order.preparing", PREPARING)
    d = dispatcher(server, server.svc.pool)
    try:
        assert await d.worker.run_once() == 1
    finally:
        await d.close()
    [message] = pushed(fcm, rid)
    assert message["token"] == tokens[0]
    assert message["notification"] == {"title": "Being prepared", "body": "Mama Put is preparing your order."}
    assert message["data"]["event"] == "order.preparing" and message["data"]["order_id"] == "ab12cd34"
    assert (await row(db, rid))["status"] == "sent" and (await row(db, rid))["outcome"] == "fcm"
    left = await db.fetch("SELECT token FROM device_tokens WHERE user_id = $1::uuid", uid)
    assert [r["token"] for r in left] == [tokens[0]]  # UNREGISTERED and INVALID_ARGUMENT: removed


async def test_retryable_answers_back_off_then_deliver_once(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm
) -> None:
    reg, _ = await with_device(client)
    rid = await queue(db, reg["user"]["id"], "order.preparing", PREPARING)
    fcm.fail_next = [503, 429]
    d = dispatcher(server, server.svc.pool, notify_backoff_base=60.0)
    try:
        await d.worker.run_once()
        first = await row(db, rid)
        assert (first["status"], first["attempts"]) == ("pending", 1) and "503" in first["last_error"]
        assert first["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=40)  # 60 s ± 25%
        assert await d.worker.run_once() == 0  # backing off: not due yet
        await make_due(db)
        await d.worker.run_once()
        assert (await row(db, rid))["attempts"] == 2 and "429" in (await row(db, rid))["last_error"]
        await make_due(db)
        await d.worker.run_once()
    finally:
        await d.close()
    assert (await row(db, rid))["status"] == "sent"
    assert len(pushed(fcm, rid)) == 1


async def test_a_timeout_is_retried_and_the_cut_call_is_not_delivered(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm
) -> None:
    reg, _ = await with_device(client)
    rid = await queue(db, reg["user"]["id"], "order.preparing", PREPARING)
    fcm.hang = asyncio.Event()
    d = dispatcher(server, server.svc.pool, notify_provider_timeout=0.3)
    try:
        await d.worker.run_once()
        timed_out = await row(db, rid)
        assert timed_out["status"] == "pending" and "ReadTimeout" in timed_out["last_error"]
        hang, fcm.hang = fcm.hang, None
        hang.set()
        await make_due(db)
        await d.worker.run_once()
    finally:
        await d.close()
    assert (await row(db, rid))["status"] == "sent"
    assert len(pushed(fcm, rid)) == 1


async def test_an_expired_oauth_token_is_fetched_again_and_a_refused_account_is_dead(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm
) -> None:
    reg, _ = await with_device(client)
    uid = reg["user"]["id"]
    d = dispatcher(server, server.svc.pool)
    try:
        first = await queue(db, uid, "order.preparing", PREPARING)
        await d.worker.run_once()
        fcm.expire_tokens()  # the cached token now answers 401: fetched again, sent once
        second = await queue(db, uid, "order.ready", PREPARING)
        await d.worker.run_once()
        assert fcm.tokens_issued == 2
        assert len(pushed(fcm, first)) == len(pushed(fcm, second)) == 1
        fcm.reject_tokens = True  # 401 even with a fresh token: the service account is wrong
        third = await queue(db, uid, "order.picked_up", PREPARING)
        await d.worker.run_once()
    finally:
        await d.close()
    dead = await row(db, third)
    assert (dead["status"], dead["outcome"], dead["attempts"]) == ("dead", "refused", 1)
    assert pushed(fcm, third) == []


async def test_dead_letters_are_listed_for_admins(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm, termii: FakeTermii
) -> None:
    reg, _ = await with_device(client)
    uid = reg["user"]["id"]
    termii.balance = 0  # Termii's 400 "Insufficient balance": permanent, dead at once
    sms = await queue(db, uid, "order.delivered", {**PREPARING}, channel="sms")
    push = await queue(db, uid, "order.preparing", PREPARING)
    fcm.fail_next = [500] * 3  # retryable each time: dead after NOTIFY_MAX_ATTEMPTS
    d = dispatcher(server, server.svc.pool, notify_max_attempts=3)
    try:
        for _ in range(3):
            await d.worker.run_once()
            await make_due(db)
    finally:
        await d.close()
    assert (await row(db, sms))["status"] == "dead" and (await row(db, sms))["attempts"] == 1
    assert (await row(db, push))["status"] == "dead" and (await row(db, push))["attempts"] == 3
    status, body = await client.call("GET", "/admin/notifications?status=dead", headers=client.admin_headers())
    assert status == 200
    listed = {n["id"]: n for n in body["notifications"]}
    assert set(listed) == {sms, push}
    assert listed[sms]["channel"] == "sms" and "Insufficient balance" in listed[sms]["lastError"]
    assert listed[push]["attempts"] == 3 and listed[push]["kind"] == "order.preparing"
    assert "body" not in listed[sms] and "recipient" not in listed[sms]  # never the text or the phone
    status, _ = await client.call("GET", "/admin/notifications?status=dead", token=reg["tokens"]["accessToken"])
    assert status == 403
    status, body = await client.call("GET", "/admin/notifications?status=lost", headers=client.admin_headers())
    assert status == 400 and "status" in body["error"]["details"]


async def test_sms_go_to_the_phone_through_termii(
    client: Client, server: Server, db: asyncpg.Connection, termii: FakeTermii
) -> None:
    reg, _ = await with_device(client)
    rid = await queue(db, reg["user"]["id"], "order.delivered", PREPARING, channel="sms")
    termii.fail_next = [500]
    d = dispatcher(server, server.svc.pool)
    try:
        await d.worker.run_once()
        assert (await row(db, rid))["status"] == "pending"
        await make_due(db)
        await d.worker.run_once()
    finally:
        await d.close()
    [sent] = termii.sent
    assert sent["to"] == reg["user"]["phone"].removeprefix("+") and sent["channel"] == "dnd"
    assert sent["sms"] == "Pocho: your order from Mama Put was delivered. Enjoy!"
    assert (await row(db, rid))["outcome"] == "termii"


async def test_a_burst_becomes_one_push_and_the_cap_holds_the_rest(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm
) -> None:
    reg, _ = await with_device(client, "VENDOR")
    uid = reg["user"]["id"]
    counter = {"counterparty": "The customer", "dish": "jollof", "request_id": "r", "offer_id": "o"}
    burst = [await queue(db, uid, "offer.countered", {**counter, "price": f"₦{n},000"}) for n in range(1, 6)]
    d = dispatcher(server, server.svc.pool, notify_push_cap=2)
    try:
        await d.worker.run_once()
        assert [m["notification"]["body"] for m in fcm.delivered] == ["The customer proposes ₦5,000."]
        assert [(await row(db, r))["outcome"] for r in burst] == ["coalesced"] * 4 + ["fcm"]
        second = await queue(db, uid, "offer.rejected", {"dish": "jollof", "request_id": "r", "offer_id": "o"})
        third = await queue(db, uid, "offer.new", {**counter, "vendor_name": "V", "price": "₦1"})
        await d.worker.run_once()
    finally:
        await d.close()
    assert (await row(db, second))["status"] == "sent"
    held = await row(db, third)  # the cap (2 per window) is reached: waits for the window's end
    assert (held["status"], held["outcome"], held["attempts"]) == ("pending", "capped", 0)
    assert held["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=30)
    assert len(fcm.delivered) == 2


async def test_quiet_hours_hold_what_can_wait_and_stale_rows_are_skipped(
    client: Client, server: Server, db: asyncpg.Connection, fcm: FakeFcm
) -> None:
    reg, _ = await with_device(client)
    uid, token = reg["user"]["id"], reg["tokens"]["accessToken"]
    local = datetime.now(ZoneInfo("Africa/Lagos"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=1)
    quiet = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "Africa/Lagos"}
    status, body = await client.call("PUT", "/api/v1/me/notifications", {"quietHours": quiet}, token=token)
    assert status == 200 and body == {"quietHours": quiet}
    offer = {"vendor_name": "V", "dish": "jollof", "price": "₦1", "request_id": "r", "offer_id": "o"}
    can_wait = await queue(db, uid, "offer.new", offer)
    urgent = await queue(db, uid, "order.preparing", PREPARING)
    stale = await queue(db, uid, "offer.rejected", offer, expires=datetime.now(UTC) - timedelta(seconds=1))
    d = dispatcher(server, server.svc.pool)
    try:
        await d.worker.run_once()
    finally:
        await d.close()
    assert [m["data"]["event"] for m in fcm.delivered] == ["order.preparing"]
    assert (await row(db, urgent))["status"] == "sent"
    held = await row(db, can_wait)
    assert (held["status"], held["outcome"]) == ("pending", "quiet_hours")
    assert held["next_attempt_at"] == end.replace(second=0, microsecond=0).astimezone(UTC)
    assert ((await row(db, stale))["status"], (await row(db, stale))["outcome"]) == ("skipped", "expired")


async def test_two_dispatchers_deliver_each_row_once_per_channel(
    client: Client, server: Server, db: asyncpg.Connection, database_url: str, fcm: FakeFcm, termii: FakeTermii
) -> None:
    rows: dict[int, str] = {}
    phones = []
    for _ in range(6):
        reg, _ = await with_device(client)
        uid = reg["user"]["id"]
        phones.append(reg["user"]["phone"].removeprefix("+"))
        for kind in ("order.preparing", "order.ready", "order.picked_up", "order.delivered"):
            rows[await queue(db, uid, kind, {**PREPARING, "eta_minutes": 5, "total": "₦1"})] = "push"
        rows[await queue(db, uid, "order.delivered", PREPARING, channel="sms")] = "sms"
    pools = [await create_pool(database_url, size=3) for _ in range(2)]
    nodes = [dispatcher(server, p, notify_batch_size=4, notify_push_cap=10) for p in pools]
    tasks = [asyncio.create_task(n.run()) for n in nodes]
    try:

        async def drained() -> bool:
            return not await db.fetchval("SELECT count(*) FROM notifications_outbox WHERE status = 'pending'")

        await eventually(drained, what="every row delivered")
    finally:
        for n, t in zip(nodes, tasks, strict=True):
            await n.stop()
            await t
            await n.close()
        for p in pools:
            await p.close()
    statuses = {r["status"] for r in await db.fetch("SELECT status FROM notifications_outbox")}
    assert statuses == {"sent"}
    for rid, channel in rows.items():
        if channel == "push":
            assert len(pushed(fcm, rid)) == 1, rid
    assert len(fcm.delivered) == sum(1 for c in rows.values() if c == "push")
    assert sorted(s["to"] for s in termii.sent) == sorted(phones)  # one SMS each


async def test_a_dispatcher_killed_mid_call_leaves_the_row_to_the_other_after_its_lease(
    client: Client, server: Server, db: asyncpg.Connection, database_url: str, fcm: FakeFcm
) -> None:
    reg, _ = await with_device(client)
    rid = await queue(db, reg["user"]["id"], "order.preparing", PREPARING)
    pools = [await create_pool(database_url, size=3) for _ in range(2)]
    first = dispatcher(server, pools[0], notify_lease_seconds=1.0)
    second = dispatcher(server, pools[1], notify_lease_seconds=1.0)
    fcm.hang = asyncio.Event()
    killed = asyncio.create_task(first.run())
    try:
        await asyncio.wait_for(fcm.arrived.wait(), 10)  # its push is in flight
        killed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killed
        await first.close()  # the process is gone: so are its connections

        def hung_up() -> bool:
            return all(r.transport is None or r.transport.is_closing() for r in fcm.waiting)

        await eventually(hung_up, what="the provider to see the caller gone")
        hang, fcm.hang = fcm.hang, None
        hang.set()
        assert (await row(db, rid))["status"] == "pending"  # still leased
        survivor = asyncio.create_task(second.run())
        try:

            async def delivered() -> bool:
                return (await row(db, rid))["status"] != "pending"

            await eventually(delivered, what="the other dispatcher to deliver after the lease")
        finally:
            await second.stop()
            await survivor
    finally:
        await second.close()
        for p in pools:
            await p.close()
    assert (await row(db, rid))["status"] == "sent" and (await row(db, rid))["attempts"] == 1
    assert fcm.dropped == 1
    assert len(pushed(fcm, rid)) == 1


async def test_key_rotation_leaves_texts_that_name_the_user_alone(
    client: Client, server: Server, db: asyncpg.Connection, termii: FakeTermii
) -> None:
    reg, _ = await with_device(client)
    uid = reg["user"]["id"]
    by_user = await queue(db, uid, "order.delivered", PREPARING, channel="sms")  # phone read at delivery
    rotated = PiiCodec.build(new_key_text("k9"), DEV_PII_KEY, DEV_PII_INDEX_KEY)
    await rotate_texts(server.svc.pool, rotated)
    assert await db.fetchval("SELECT recipient FROM notifications_outbox WHERE id = $1", by_user) == f"user:{uid}"
    d = dispatcher(server, server.svc.pool)
    try:
        await d.worker.run_once()
    finally:
        await d.close()
    assert [s["to"] for s in termii.sent] == [reg["user"]["phone"].removeprefix("+")]
