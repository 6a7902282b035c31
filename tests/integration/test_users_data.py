"""Data rights (issue 15): GET /api/v1/me/export holds a seeded person's whole footprint, and
after DELETE /api/v1/me no query by that person's phone, name or email finds anything but
tombstones, while orders and payments keep their ids and amounts."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from persistence import users as users_db
from tests.e2e.util import Party, accepted_order, customer, request_payload, vendor
from tests.helpers import Client
from tests.integration.users_support import ME, RESET_REQUEST, texts, watch

EXPORT = "/api/v1/me/export"


async def _footprint(client: Client, db: asyncpg.Connection) -> tuple[Party, Party, dict[str, Any], str]:
    """A customer with a distinctive name and email, a finished (canceled) paid order with a
    payment and a review, a second login session, a pending reset code, and an open request.
    Returns (customer, vendor, order, open request id)."""
    cust = await customer(client)
    uid = uuid.UUID(cust.user["id"])
    status, _ = await client.call(
        "PATCH",
        ME,
        {"firstName": "Zebulonia", "lastName": "Quartermaine", "email": "zebulonia.q@example.org", "locale": "yo-NG"},
        token=cust.token,
    )
    assert status == 200
    vend = await vendor(client, db, name="Mama Put Deluxe")
    order = await accepted_order(cust, vend, notes="gate code Pinwheel, ask for Zebulonia")
    await client.server.svc.orders.confirm_payment(order["id"], reference="ref-zq-1")
    await cust.ok("order:cancel", {"orderId": order["id"], "reason": "Zebulonia changed her mind"})
    oid = uuid.UUID(order["id"])
    await db.execute(
        """INSERT INTO payments (order_id, provider, reference, amount_kobo, status, paid_at)
           VALUES ($1, 'PAYSTACK', 'ref-zq-1', $2, 'SUCCESS', now())""",
        oid,
        order["amountKobo"],
    )
    vendor_uuid = uuid.UUID(str(vend.vendor_id))
    await db.execute(
        """INSERT INTO reviews (order_id, customer_id, vendor_id, rating, comment)
           VALUES ($1, $2, $3, 4, 'Zebulonia says: lovely jollof')""",
        oid,
        uid,
        vendor_uuid,
    )
    assert (
        await client.call(
            "POST", "/api/v1/auth/login", {"phone": cust.user["phone"], "password": "correct-horse-battery"}
        )
    )[0] == 200
    assert (await client.call("POST", RESET_REQUEST, {"phone": cust.user["phone"]}))[0] == 202
    open_req = (await cust.ok("request:create", request_payload(addressLine="7 Zebulonia Close, Lekki")))["request"]
    bid = (await vend.ok("offer:place", {"requestId": open_req["id"], "priceKobo": 350_000}))["offer"]
    counter = {"offerId": bid["id"], "priceKobo": 320_000, "message": "Zebulonia asks for extra pepper"}
    await cust.ok("offer:counter", counter)
    return cust, vend, order, open_req["id"]


async def test_export_holds_the_whole_footprint(client: Client, db: asyncpg.Connection) -> None:
    cust, vend, order, open_id = await _footprint(client, db)
    status, doc = await client.call("GET", EXPORT, token=cust.token)
    assert status == 200
    profile = doc["profile"]
    assert (profile["id"], profile["phone"], profile["firstName"], profile["email"], profile["locale"]) == (
        cust.user["id"],
        cust.user["phone"],
        "Zebulonia",
        "zebulonia.q@example.org",
        "yo-NG",
    )
    assert "passwordHash" not in profile and "totpSecret" not in profile
    assert {r["id"] for r in doc["mealRequests"]} == {order["requestId"], open_id}
    assert order["offerId"] in {o["id"] for o in doc["offers"]} and len(doc["offers"]) == 2
    assert [(o["id"], o["amountKobo"], o["status"]) for o in doc["orders"]] == [
        (order["id"], order["amountKobo"], "CANCELED")
    ]
    assert [(p["reference"], p["amountKobo"], p["status"]) for p in doc["payments"]] == [
        ("ref-zq-1", order["amountKobo"], "SUCCESS")
    ]
    assert set(doc["payments"][0]) == {
        "id",
        "orderId",
        "provider",
        "reference",
        "amountKobo",
        "currency",
        "status",
        "paidAt",
        "createdAt",
        "updatedAt",
    }  # metadata only: an allow list, whatever columns payments gains
    assert [(r["rating"], r["comment"]) for r in doc["reviews"]] == [(4, "Zebulonia says: lovely jollof")]
    assert len(doc["sessions"]) == 2 and all(s["ipPrefix"] == "127.0.0.0/24" for s in doc["sessions"])
    kinds = {n["kind"] for n in doc["notifications"]}
    # the reset code, and what the outbox queued for the customer's request and order (issue 10)
    expected = {"password_reset", "offer.new", "order.confirmed", "order.canceled"}
    assert kinds == expected and all("body" not in n for n in doc["notifications"])
    actions = {a["action"] for a in doc["auditEntries"]}
    assert {"auth.register", "auth.login", "user.profile_updated", "auth.password_reset_requested"} <= actions
    assert doc["vendor"] is None and doc["rider"] is None and doc["truncated"] == []
    # No secret of any table travels in the export.
    text = str(doc)
    for secret in ("password_hash", "passwordHash", "codeHash", "tokenHash", "argon2"):
        assert secret not in text
    # The vendor's export shows its side: its profile, its offers and orders, not the customer's profile.
    status, vdoc = await client.call("GET", EXPORT, token=vend.token)
    assert status == 200 and vdoc["vendor"]["displayName"] == "Mama Put Deluxe"
    assert [o["id"] for o in vdoc["orders"]] == [order["id"]] and len(vdoc["offers"]) == 2
    assert vdoc["mealRequests"] == [] and "zebulonia" not in str(vdoc["profile"]).lower()
    # Five exports an hour per user.
    for _ in range(4):
        assert (await client.call("GET", EXPORT, token=cust.token))[0] == 200
    status, body = await client.call("GET", EXPORT, token=cust.token)
    assert status == 429 and body["error"]["details"]["limit"] == "export"
    assert (await client.call("GET", EXPORT))[0] == 401


async def _text_columns(db: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await db.fetch(
        """SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND data_type IN ('text', 'jsonb', 'ARRAY', 'character varying')
              AND table_name <> 'schema_migrations'"""
    )
    return [(r["table_name"], r["column_name"]) for r in rows]


async def _find(db: asyncpg.Connection, needle: str) -> list[str]:
    """Every (table.column) whose value contains `needle`, in any case."""
    found = []
    for table, column in await _text_columns(db):
        hit = await db.fetchval(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE $1', "%" + needle + "%")
        if hit:
            found.append(f"{table}.{column}")
    return found


async def test_erasure_leaves_only_tombstones(client: Client, db: asyncpg.Connection) -> None:
    cust, vend, order, open_id = await _footprint(client, db)
    uid = uuid.UUID(cust.user["id"])
    phone = cust.user["phone"]
    svc = client.server.svc
    needles = (
        phone,
        phone[-9:],
        "Zebulonia",
        "Quartermaine",
        "zebulonia.q@example.org",
        "Pinwheel",
        "Lekki",
        "extra pepper",
    )
    # The footprint is really there: in plaintext where the person typed free text (review,
    # counter-offer message, cancel reason), sealed in the users row, in the requests' address
    # and notes and in the texts' recipient.
    for needle in ("Zebulonia", "extra pepper"):
        assert await _find(db, needle), needle
    for needle in ("Quartermaine", "zebulonia.q@example.org", "Pinwheel", "Lekki", phone):
        assert await _find(db, needle) == [], needle  # never stored in the clear
    raw = await db.fetchrow("SELECT phone, first_name, last_name, email FROM users WHERE id = $1", uid)
    assert all(str(v).startswith("pii1.dev.") for v in raw.values())
    assert (await users_db.user_by_phone(svc.pool, svc.pii, phone) or {}).get("last_name") == "Quartermaine"
    second = await client.connect("/customer", cust.token)
    revoked, gone = watch(second, "/customer")
    watcher = vend.next("request:closed")

    status, err = await client.call("DELETE", ME, {"password": "wrong-password"}, token=cust.token)
    assert status == 400 and err["error"]["details"] == {"password": "wrong password"}
    status, body = await client.call("DELETE", ME, {"password": "correct-horse-battery"}, token=cust.token)
    assert status == 204, body
    assert await asyncio.wait_for(revoked, 5) == {"reason": "account_erased"}
    await asyncio.wait_for(gone, 5)
    # The open request was cancelled through its actor: its vendors were told.
    closed = await watcher
    assert closed == {"requestId": open_id, "reason": "cancelled", "seq": closed["seq"]}

    for needle in needles:
        assert await _find(db, needle) == [], needle
    # Sealed values were replaced, not just hidden: tombstones in rows and stored payloads.
    stored = await db.fetch(
        """SELECT r.address_line, r.notes,
                  e.payload #>> '{request,addressLine}' AS a, e.payload #>> '{request,notes}' AS n
             FROM meal_requests r JOIN negotiation_events e ON e.request_id = r.id AND e.kind = 'request:new'
            WHERE r.customer_id = $1""",
        uid,
    )
    assert len(stored) == 2 and all(tuple(r.values()) == ("[erased]", None, "[erased]", None) for r in stored)
    assert await users_db.user_by_phone(svc.pool, svc.pii, phone) is None
    assert (
        await db.fetchval(
            "SELECT count(*) FROM users WHERE id = $1 AND num_nonnulls(phone_index, email_index, name_index) > 0", uid
        )
        == 0
    )
    user = await db.fetchrow("SELECT * FROM users WHERE id = $1", uid)
    assert (user["first_name"], user["last_name"], user["email"], user["phone"]) == (
        "[erased]",
        "[erased]",
        None,
        f"erased:{uid}",
    )
    assert user["erased_at"] is not None and user["disabled"] and user["password_hash"] == "!erased"
    for table in ("refresh_tokens", "verification_codes", "account_codes", "notifications_outbox", "command_replies"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", uid) == 0, table
    # Accounting keeps its rows, amounts and ids; they point at the tombstone.
    kept = await db.fetchrow(
        "SELECT customer_id, amount_kobo, status FROM orders WHERE id = $1", uuid.UUID(order["id"])
    )
    assert (kept["customer_id"], kept["amount_kobo"], kept["status"]) == (uid, order["amountKobo"], "CANCELED")
    assert await db.fetchval("SELECT amount_kobo FROM payments WHERE reference = 'ref-zq-1'") == order["amountKobo"]
    assert await db.fetchval("SELECT rating FROM reviews WHERE customer_id = $1", uid) == 4
    assert (
        await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'user.erased' AND target_id = $1", str(uid))
        == 1
    )

    # The person is gone: no login, no token, no reset text; the number can sign up afresh.
    assert (await client.call("GET", ME, token=cust.token))[0] == 401
    assert (await client.call("POST", "/api/v1/auth/login", {"phone": phone, "password": "correct-horse-battery"}))[
        0
    ] == 401
    assert (await client.call("POST", RESET_REQUEST, {"phone": phone}))[0] == 202
    assert await texts(db, phone) == []
    again = await client.register(phone=phone)
    assert again["user"]["id"] != str(uid)
    # Ops see the tombstone and cannot bring it back.
    status, body = await client.call("GET", f"/admin/users?q={uid}", headers=client.admin_headers())
    assert body["users"][0]["erasedAt"] is not None and body["users"][0]["firstName"] == "[erased]"
    assert (await client.call("POST", f"/admin/users/{uid}/enable", headers=client.admin_headers()))[0] == 409


async def test_erasing_a_vendor(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    cust.listen("offer:withdrawn")
    vend = await vendor(client, db, name="Zebulonia Kitchen")
    await client.call("PATCH", ME, {"firstName": "Zebulonia"}, token=vend.token)
    req = (await cust.ok("request:create", request_payload()))["request"]
    offer = (await vend.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]
    await db.execute(  # the payout account (payments' settlement route) is theirs too
        """INSERT INTO vendor_settlements (vendor_id, bank_code, account_number, account_name)
           VALUES ($1, '058', '0123456789', 'ZEBULONIA KITCHEN LTD')""",
        uuid.UUID(str(vend.vendor_id)),
    )
    status, exported = await client.call("GET", EXPORT, token=vend.token)
    assert status == 200 and exported["vendorSettlement"][0]["accountNumber"] == "0123456789", exported.keys()
    withdrawn = cust.next("offer:withdrawn")
    status, _ = await client.call("DELETE", ME, {"password": "correct-horse-battery"}, token=vend.token)
    assert status == 204
    assert (await withdrawn)["offer"]["id"] == offer["id"]
    assert await _find(db, "Zebulonia") == []
    assert await db.fetchval("SELECT count(*) FROM vendor_settlements") == 0
    assert await db.fetchval("SELECT verified FROM vendors WHERE id = $1", uuid.UUID(str(vend.vendor_id))) is False
    assert vend.vendor_id not in await client.server.svc.geo.vendors_covering(req["deliveryLat"], req["deliveryLng"])


async def test_erasure_waits_for_running_orders(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    vend = await vendor(client, db)
    order = await accepted_order(cust, vend)
    await client.server.svc.orders.confirm_payment(order["id"])
    for party in (cust, vend):
        status, body = await client.call("DELETE", ME, {"password": "correct-horse-battery"}, token=party.token)
        assert (
            status == 409
            and body["error"]["code"] == "conflict"
            and body["error"]["details"]["orders"] == [order["id"]]
        )
    assert await db.fetchval("SELECT count(*) FROM users WHERE erased_at IS NOT NULL") == 0
    assert (await client.call("GET", ME, token=cust.token))[0] == 200
    assert (await client.call("DELETE", ME, {}, token=cust.token))[0] == 400
    assert (await client.call("DELETE", ME, {"password": "x"}))[0] == 401
