"""Personal data at rest (issue 15) against PostgreSQL: rows sealed on write and found by
blind index, rows from before encryption still working, and a key rotation with the
`pocho-rt pii-rotate` command while old and new keys are both configured. Meal requests'
address line and notes (row, stored event payload, stored replies) and SMS recipients are
sealed too, while every client-facing path shows them plain."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import aiohttp
import asyncpg

from pocho_rt.auth.passwords import hash_password
from pocho_rt.config import DEV_PII_INDEX_KEY, DEV_PII_KEY
from tests.conftest import StartServer
from tests.e2e.util import Party, customer, request_payload, vendor
from tests.helpers import PASSWORD, Client, new_phone
from tests.integration.users_support import ME, latest_code, login

INDEX2 = "SW5kZXgta2V5LXR3by0zMi1ieXRlcy1sb25nLWVub3VnaA"


async def _legacy_user(db: asyncpg.Connection, phone: str) -> str:
    """A row as written before migration 0005: plaintext personal columns, no indexes."""
    uid = uuid.uuid4()
    await db.execute(
        """INSERT INTO users (id, phone, password_hash, role, first_name, last_name, email)
           VALUES ($1, $2, $3, 'CUSTOMER', 'Legacy', 'Person', 'legacy@example.com')""",
        uid,
        phone,
        await hash_password(PASSWORD),
    )
    return str(uid)


async def test_users_are_sealed_and_rows_from_before_still_work(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register(email="Ada@Example.com")
    raw = await db.fetchrow("SELECT * FROM users WHERE id = $1", uuid.UUID(reg["user"]["id"]))
    for column in ("phone", "first_name", "last_name", "email"):
        assert raw[column].startswith("pii1.dev."), column
    assert reg["user"]["phone"] not in str(dict(raw)) and "Ada@Example.com" not in str(dict(raw))
    assert raw["phone_index"] and raw["email_index"] and raw["name_index"]
    assert (await login(client, reg["user"]["phone"]))[0] == 200
    assert (await client.call("POST", "/api/v1/auth/register", {**_body(reg["user"]["phone"])}))[0] == 409

    legacy_phone = new_phone()
    legacy_id = await _legacy_user(db, legacy_phone)
    status, body = await login(client, legacy_phone)
    assert status == 200 and body["user"]["id"] == legacy_id and body["user"]["firstName"] == "Legacy"
    status, me = await client.call("GET", ME, token=body["tokens"]["accessToken"])
    assert status == 200 and (me["phone"], me["email"]) == (legacy_phone, "legacy@example.com")
    # Its number cannot be registered twice, though it has no blind index yet.
    status, err = await client.call("POST", "/api/v1/auth/register", _body(legacy_phone))
    assert status == 409 and err["error"]["code"] == "conflict"
    # Ops find it by its plaintext phone and email.
    for q in (legacy_phone, "LEGACY@example.com"):
        async with client.session.get("/admin/users", params={"q": q}, headers=client.admin_headers()) as resp:
            assert [u["id"] for u in (await resp.json())["users"]] == [legacy_id], q
    # A profile change seals what it writes.
    status, _ = await client.call("PATCH", ME, {"firstName": "Renamed"}, token=body["tokens"]["accessToken"])
    assert status == 200
    row = await db.fetchrow("SELECT first_name, last_name, name_index FROM users WHERE id = $1", uuid.UUID(legacy_id))
    assert row["first_name"].startswith("pii1.") and row["last_name"] == "Person" and row["name_index"]


# ---------------------------------------------------------------- meal requests and texts

ADDRESS, NOTES = "7 Quiddity Crescent, Yaba", "knock twice for Xanthippe"
VERIFY = "/api/v1/auth/verify/request"


async def _stored_request(db: asyncpg.Connection, request_id: str) -> list[str | None]:
    """The address line and notes of a request wherever they are stored: the row, the
    request:new payload, each stored reply holding the request view."""
    rid = uuid.UUID(request_id)
    row = await db.fetchrow("SELECT address_line, notes FROM meal_requests WHERE id = $1", rid)
    view = """{col} #>> '{{request,addressLine}}' AS a, {col} #>> '{{request,notes}}' AS n"""
    event = await db.fetchrow(
        f"SELECT {view.format(col='payload')} FROM negotiation_events WHERE request_id = $1 AND kind = 'request:new'",
        rid,
    )
    replies = await db.fetch(
        f"SELECT {view.format(col='reply')} FROM command_replies WHERE actor_key = $1 AND reply ? 'request'",
        f"meal_request:{request_id}",
    )
    assert replies, "no stored reply holds the request"
    return [row["address_line"], row["notes"], event["a"], event["n"], *(v for r in replies for v in (r["a"], r["n"]))]


async def _in_the_clear(db: asyncpg.Connection, needle: str) -> int:
    """Rows of the tables holding requests and texts whose text contains `needle`."""
    return int(
        await db.fetchval(
            """SELECT (SELECT count(*) FROM meal_requests t WHERE t::text ILIKE $1)
                    + (SELECT count(*) FROM negotiation_events t WHERE t::text ILIKE $1)
                    + (SELECT count(*) FROM command_replies t WHERE t::text ILIKE $1)
                    + (SELECT count(*) FROM notifications_outbox t WHERE t::text ILIKE $1)
                    + (SELECT count(*) FROM account_codes t WHERE t::text ILIKE $1)""",
            f"%{needle}%",
        )
    )


async def _seen_by_clients(client: Client, cust: Party, vend: Party, request_id: str, msg_id: str) -> list[Any]:
    """(address line, notes) pairs as every reading path shows them, the actor reloaded from
    PostgreSQL first: a clientMsgId retry, request:watch with sinceSeq, the stored events a
    replay reads, the HTTP reads of customer and vendor, and the export."""
    svc = client.server.svc
    assert svc.actors.passivate("meal_request", request_id)
    seen = []
    retried = await cust.ok("request:create", request_payload(clientMsgId=msg_id))  # the stored reply
    assert retried["request"]["id"] == request_id
    seen.append(retried["request"])
    assert svc.actors.passivate("meal_request", request_id)
    watched = await cust.ok("request:watch", {"requestId": request_id, "sinceSeq": 0})
    assert [e["event"] for e in watched["events"]] == ["offer:new"]  # the customer's missed events
    seen.append(watched["request"])
    stored = await svc.negotiation.store.events_since(request_id, 0, 100)
    seen.append(next(e["payload"]["request"] for e in stored if e["kind"] == "request:new"))
    seen.append((await client.call("GET", f"/api/v1/meal-requests/{request_id}", token=cust.token))[1]["request"])
    for party in (cust, vend):  # the customer's own list, the vendor's nearby list
        listed = (await client.call("GET", "/api/v1/meal-requests", token=party.token))[1]["requests"]
        seen.append(next(r for r in listed if r["id"] == request_id))
    status, doc = await client.call("GET", "/api/v1/me/export", token=cust.token)
    assert status == 200
    seen.append(next(r for r in doc["mealRequests"] if r["id"] == request_id))
    return [(v["addressLine"], v["notes"]) for v in seen]


async def test_requests_and_texts_are_sealed_at_rest_and_plain_to_clients(
    client: Client, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    announced = vend.next("request:new")
    created = await cust.ok("request:create", request_payload(addressLine=ADDRESS, notes=NOTES, clientMsgId="pii-1"))
    rid = created["request"]["id"]
    assert (created["request"]["addressLine"], created["request"]["notes"]) == (ADDRESS, NOTES)
    assert ((await announced)["request"]["addressLine"], (await announced)["request"]["notes"]) == (ADDRESS, NOTES)
    offer = (await vend.ok("offer:place", {"requestId": rid, "priceKobo": 300_000}))["offer"]
    await cust.nth("offer:new", 1)
    # A text and a pending phone change: their numbers are sealed too.
    assert (await client.call("POST", VERIFY, token=cust.token))[0] == 202
    new = new_phone()
    assert (await client.call("POST", f"{ME}/phone", {"phone": new}, token=cust.token))[0] == 202

    stored = await _stored_request(db, rid)
    assert len(stored) == 6 and all(v is not None and v.startswith("pii1.dev.") for v in stored), stored
    assert stored[0] == stored[2] == stored[4]  # sealed once per request, the same value everywhere
    for needle in ("Quiddity", "Xanthippe", cust.user["phone"], new):
        assert await _in_the_clear(db, needle) == 0, needle
    for r in await db.fetch("SELECT recipient FROM notifications_outbox WHERE channel = 'sms'"):
        assert r["recipient"].startswith("pii1.dev.")
    assert (await db.fetchval("SELECT target FROM account_codes WHERE target IS NOT NULL")).startswith("pii1.dev.")

    assert await _seen_by_clients(client, cust, vend, rid, "pii-1") == [(ADDRESS, NOTES)] * 7
    doc = (await client.call("GET", "/api/v1/me/export", token=cust.token))[1]
    assert sorted((n["kind"], n["recipient"]) for n in doc["notifications"]) == [
        ("offer.new", f"user:{cust.user['id']}"),  # a push (issue 10): names the user, no phone
        ("phone_change", new),
        ("verify_code", cust.user["phone"]),
    ]
    # The phone change opens its sealed target.
    code = await latest_code(db, new, "phone_change")
    assert (await client.call("POST", f"{ME}/phone/confirm", {"code": code}, token=cust.token))[0] == 200
    assert (await client.call("GET", ME, token=cust.token))[1]["phone"] == new

    # A reply holding the request (a cancel) is stored sealed and retried plain after a reload.
    cancel = {"requestId": rid, "clientMsgId": "pii-2"}
    cancelled = await cust.ok("request:cancel", cancel)
    assert cancelled["request"]["addressLine"] == ADDRESS and offer["id"]
    reply = await db.fetchval(
        "SELECT reply #>> '{request,addressLine}' FROM command_replies WHERE client_msg_id = 'pii-2'"
    )
    assert reply.startswith("pii1.dev.")
    assert client.server.svc.actors.passivate("meal_request", rid)
    assert await cust.ok("request:cancel", cancel) == cancelled


async def test_request_rows_from_before_sealing_read_as_they_are(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    rid = (await cust.ok("request:create", request_payload(addressLine=ADDRESS, clientMsgId="old-1")))["request"]["id"]
    await vend.ok("offer:place", {"requestId": rid, "priceKobo": 300_000})
    await cust.nth("offer:new", 1)
    await _make_legacy(db, rid, cust.user["id"], cust.user["phone"])
    assert await _stored_request(db, rid) == ["1 Old Lane", "old note"] * 3
    assert await _seen_by_clients(client, cust, vend, rid, "old-1") == [("1 Old Lane", "old note")] * 7
    doc = (await client.call("GET", "/api/v1/me/export", token=cust.token))[1]
    texts = [n["recipient"] for n in doc["notifications"] if n["channel"] == "sms"]  # not the offer's push
    assert texts == [cust.user["phone"]]


async def _make_legacy(db: asyncpg.Connection, request_id: str, user_id: str, phone: str) -> None:
    """Turn a request's stored values back into plaintext, as written before sealing, and store
    a plaintext text to `phone`."""
    rid = uuid.UUID(request_id)
    await db.execute("UPDATE meal_requests SET address_line = '1 Old Lane', notes = 'old note' WHERE id = $1", rid)
    plain = """jsonb_set(jsonb_set({col}, '{{request,addressLine}}', '"1 Old Lane"'),
                         '{{request,notes}}', '"old note"')"""
    await db.execute(
        f"UPDATE negotiation_events SET payload = {plain.format(col='payload')} WHERE request_id = $1 AND seq = 1", rid
    )
    await db.execute(
        f"UPDATE command_replies SET reply = {plain.format(col='reply')} WHERE actor_key = $1 AND reply ? 'request'",
        f"meal_request:{request_id}",
    )
    await db.execute(
        """INSERT INTO notifications_outbox (user_id, channel, kind, recipient, body, status, sent_at)
           VALUES ($1, 'sms', 'verify_code', $2, 'old text', 'sent', now())""",
        uuid.UUID(user_id),
        phone,
    )


def _body(phone: str) -> dict[str, str]:
    return {"phone": phone, "password": PASSWORD, "role": "CUSTOMER", "firstName": "A", "lastName": "B"}


async def _cli(database_url: str, redis_url: str, *args: str, **env: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pocho_rt.cli",
        *args,
        env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_key_rotation_with_the_cli(
    start_server: StartServer, db: asyncpg.Connection, database_url: str, redis_url: str
) -> None:
    first = await start_server()
    async with aiohttp.ClientSession(base_url=first.url) as session:
        c1 = Client(session, first)
        old_user = await c1.register(email="old@example.com")
        # A customer's request, text and pending phone change under the first key, and a
        # request and text from before sealing.
        cust = await customer(c1)
        sealed = await cust.ok("request:create", request_payload(addressLine=ADDRESS, notes=NOTES, clientMsgId="r-1"))
        legacy = await cust.ok("request:create", request_payload(clientMsgId="r-0"))
        await _make_legacy(db, legacy["request"]["id"], cust.user["id"], cust.user["phone"])
        assert (await c1.call("POST", VERIFY, token=cust.token))[0] == 202
        assert (await c1.call("POST", f"{ME}/phone", {"phone": new_phone()}, token=cust.token))[0] == 202
        await c1.close()
    legacy_phone = new_phone()
    await _legacy_user(db, legacy_phone)

    keys = await _cli(database_url, redis_url, "pii-keygen", "--kid", "k2")
    new_key = keys.split("POCHO_PII_KEY=")[1].split()[0]
    assert new_key.startswith("k2:") and "POCHO_PII_INDEX_KEY=" in keys
    rotated = {
        "pii_key": new_key,
        "pii_old_keys": DEV_PII_KEY,
        "pii_index_key": INDEX2,
        "pii_old_index_key": DEV_PII_INDEX_KEY,
    }
    during = await start_server(**rotated)
    async with aiohttp.ClientSession(base_url=during.url) as session:
        c2 = Client(session, during)
        # Old rows are read and found with the old keys; new rows are sealed with the new one.
        assert (await login(c2, old_user["user"]["phone"]))[0] == 200
        assert (await login(c2, legacy_phone))[0] == 200
        new_user = await c2.register()
    assert (await db.fetchval("SELECT phone FROM users WHERE id = $1", uuid.UUID(new_user["user"]["id"]))).startswith(
        "pii1.k2."
    )

    out = await _cli(
        database_url,
        redis_url,
        "pii-rotate",
        "--batch",
        "2",
        POCHO_PII_KEY=new_key,
        POCHO_PII_OLD_KEYS=DEV_PII_KEY,
        POCHO_PII_INDEX_KEY=INDEX2,
        POCHO_PII_OLD_INDEX_KEY=DEV_PII_INDEX_KEY,
    )
    assert "4 users seen, 3 re-sealed under key 'k2'" in out, out
    assert "2 meal requests seen, 6 stored values re-sealed" in out, out  # row, event, reply of each
    assert "3 texts seen, 3 recipients re-sealed" in out and "1 pending phone-change codes re-sealed" in out, out
    for row in await db.fetch("SELECT phone, first_name, last_name, email FROM users"):
        assert all(v is None or v.startswith("pii1.k2.") for v in row.values()), dict(row)
    for rid in (sealed["request"]["id"], legacy["request"]["id"]):
        stored = await _stored_request(db, rid)
        assert all(v is None or v.startswith("pii1.k2.") for v in stored), stored
    stored = [r[0] for r in await db.fetch("SELECT recipient FROM notifications_outbox WHERE channel = 'sms'")]
    stored.append(await db.fetchval("SELECT target FROM account_codes WHERE target IS NOT NULL"))
    assert len(stored) == 4 and all(v.startswith("pii1.k2.") for v in stored), stored
    again = await _cli(database_url, redis_url, "pii-rotate", POCHO_PII_KEY=new_key, POCHO_PII_INDEX_KEY=INDEX2)
    assert "4 users seen, 0 re-sealed" in again  # idempotent
    assert "0 stored values re-sealed" in again and "0 recipients re-sealed" in again, again

    # The old keys can go: everyone is read and found with the new ones alone.
    after = await start_server(pii_key=new_key, pii_index_key=INDEX2)
    async with aiohttp.ClientSession(base_url=after.url) as session:
        c3 = Client(session, after)
        for phone in (old_user["user"]["phone"], legacy_phone, new_user["user"]["phone"]):
            status, body = await login(c3, phone)
            assert status == 200, phone
        status, me = await c3.call("GET", ME, token=body["tokens"]["accessToken"])
        assert me["phone"] == new_user["user"]["phone"]
        async with session.get("/admin/users", params={"q": "old@example.com"}, headers=c3.admin_headers()) as resp:
            assert [u["id"] for u in (await resp.json())["users"]] == [old_user["user"]["id"]]
        # The customer's requests and texts read plain with the new key alone.
        token = (await login(c3, cust.user["phone"]))[1]["tokens"]["accessToken"]
        for created, plain in ((sealed, (ADDRESS, NOTES)), (legacy, ("1 Old Lane", "old note"))):
            status, body = await c3.call("GET", f"/api/v1/meal-requests/{created['request']['id']}", token=token)
            assert status == 200 and (body["request"]["addressLine"], body["request"]["notes"]) == plain
        sock = await c3.connect("/customer", token)
        retried = await sock.call("request:create", request_payload(clientMsgId="r-1"), namespace="/customer")
        assert retried["data"]["request"] == sealed["request"]
        status, doc = await c3.call("GET", "/api/v1/me/export", token=token)
        assert {n["recipient"] for n in doc["notifications"]} >= {cust.user["phone"]}
        await c3.close()
