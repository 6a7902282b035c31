"""Queries for a person's data rights (NDPA 2023): everything stored about a user, and erasure.

Export reads each table the user appears in, as whole rows (`to_jsonb`) minus columns that are
secrets or internal bookkeeping; payments are read column by column (an allow list), so card
or provider data another change may add never leaks into an export.

Erasure replaces personal fields with tombstones and deletes credentials, in the caller's
transaction. Rows that accounting needs (orders, payments, reviews' ratings, offers) keep
their ids and amounts; they point at the tombstoned user row, which no longer names anyone.
Delivery points are rounded to 2 decimals (about 1 km), in rows and in stored event payloads.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from persistence.pii import PREFIX, RECIPIENT, USER_PII_COLUMNS, PiiCodec

# Never exported: secrets, and columns that say nothing about the person.
_HIDDEN = (
    "password_hash",
    "totp_secret",
    "code_hash",
    "token_hash",
    "shard",
    "search_tsv",
    "phone_index",
    "email_index",
    "name_index",
)
TOMBSTONE = "[erased]"
VENDOR_TOMBSTONE = "[erased vendor]"


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        row = orjson.loads(r["j"]) if isinstance(r["j"], str | bytes) else dict(r["j"])
        for col in _HIDDEN:
            row.pop(col, None)
        out.append(row)
    return out


async def _json(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return _rows(await conn.fetch(sql, *args))


async def export_rows(
    conn: asyncpg.Connection, pii: PiiCodec, user_id: str, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows about the user (snake_case keys; at most `limit` rows each, newest
    first), personal columns opened."""
    uid = user_id
    vendor = "(SELECT id FROM vendors WHERE user_id = $1::uuid)"
    rider = "(SELECT id FROM riders WHERE user_id = $1::uuid)"
    mine = f"(customer_id = $1::uuid OR vendor_id IN {vendor} OR rider_id IN {rider})"
    out: dict[str, list[dict[str, Any]]] = {
        "user": await _json(conn, "SELECT to_jsonb(u) AS j FROM users u WHERE id = $1::uuid", uid),
        "vendor": await _json(conn, "SELECT to_jsonb(v) AS j FROM vendors v WHERE user_id = $1::uuid", uid),
        "rider": await _json(conn, "SELECT to_jsonb(r) AS j FROM riders r WHERE user_id = $1::uuid", uid),
        "vendor_settlement": await _json(
            conn, f"SELECT to_jsonb(s) AS j FROM vendor_settlements s WHERE vendor_id IN {vendor}", uid
        ),
        "meal_requests": await _json(
            conn,
            """SELECT to_jsonb(r) AS j FROM meal_requests r WHERE customer_id = $1::uuid
                ORDER BY created_at DESC LIMIT $2""",
            uid,
            limit,
        ),
        "offers": await _json(
            conn,
            f"""SELECT to_jsonb(o) AS j FROM offers o
                 WHERE o.vendor_id IN {vendor}
                    OR o.request_id IN (SELECT id FROM meal_requests WHERE customer_id = $1::uuid)
                 ORDER BY created_at DESC LIMIT $2""",
            uid,
            limit,
        ),
        "orders": await _json(
            conn, f"SELECT to_jsonb(o) AS j FROM orders o WHERE {mine} ORDER BY created_at DESC LIMIT $2", uid, limit
        ),
        "payments": await _json(
            conn,
            f"""SELECT jsonb_build_object(
                         'id', p.id, 'order_id', p.order_id, 'provider', p.provider, 'reference', p.reference,
                         'amount_kobo', p.amount_kobo, 'currency', p.currency, 'status', p.status,
                         'paid_at', p.paid_at, 'created_at', p.created_at, 'updated_at', p.updated_at) AS j
                  FROM payments p JOIN orders o ON o.id = p.order_id
                 WHERE o.customer_id = $1::uuid OR o.vendor_id IN {vendor}
                 ORDER BY p.created_at DESC LIMIT $2""",
            uid,
            limit,
        ),
        "reviews": await _json(
            conn, f"SELECT to_jsonb(r) AS j FROM reviews r WHERE {mine} ORDER BY created_at DESC LIMIT $2", uid, limit
        ),
        "notifications": await _json(
            # The text of a message is left out: it may hold a live one-time code, and an
            # export must not turn a stolen access token into a password reset.
            conn,
            """SELECT jsonb_build_object('id', id, 'channel', channel, 'kind', kind, 'recipient', recipient,
                                         'status', status, 'created_at', created_at, 'sent_at', sent_at) AS j
                 FROM notifications_outbox WHERE user_id = $1::uuid ORDER BY id DESC LIMIT $2""",
            uid,
            limit,
        ),
        "audit_entries": await _json(
            conn,
            """SELECT to_jsonb(a) AS j FROM audit_log a
                 WHERE actor_id = $1::uuid OR target_id = $1::text
                    OR target_id IN (SELECT id::text FROM vendors WHERE user_id = $1::uuid)
                 ORDER BY id DESC LIMIT $2""",
            uid,
            limit,
        ),
        "rider_locations": await _json(
            conn,
            f"""SELECT to_jsonb(l) AS j FROM rider_locations l WHERE rider_id IN {rider}
                 ORDER BY recorded_at DESC LIMIT $2""",
            uid,
            limit,
        ),
    }
    for user in out["user"]:
        for column in USER_PII_COLUMNS:
            user[column] = pii.open(column, user.get(column))
    out["meal_requests"] = [pii.open_request(r) for r in out["meal_requests"]]
    for note in out["notifications"]:
        note[RECIPIENT] = pii.open(RECIPIENT, note[RECIPIENT])
    return out


# ---------------------------------------------------------------- erasure


async def open_request_ids(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT id::text AS id FROM meal_requests WHERE customer_id = $1::uuid AND status = 'OPEN'", user_id
    )
    return [r["id"] for r in rows]


async def active_order_ids(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> list[str]:
    """Orders the user takes part in that are not finished (delivered or canceled)."""
    rows = await conn.fetch(
        """SELECT id::text AS id FROM orders
            WHERE status NOT IN ('DELIVERED', 'CANCELED')
              AND (customer_id = $1::uuid
                   OR vendor_id IN (SELECT id FROM vendors WHERE user_id = $1::uuid)
                   OR rider_id IN (SELECT id FROM riders WHERE user_id = $1::uuid))""",
        user_id,
    )
    return [r["id"] for r in rows]


async def actor_keys(conn: asyncpg.Connection, user_id: str) -> tuple[list[str], list[str]]:
    """(request ids, order ids) the user touches: their actors are dropped from memory after an
    erasure so nothing unscrubbed is served or written back from there."""
    requests = await conn.fetch(
        """SELECT id::text AS id FROM meal_requests WHERE customer_id = $1::uuid
           UNION SELECT request_id::text FROM offers
                  WHERE vendor_id IN (SELECT id FROM vendors WHERE user_id = $1::uuid)""",
        user_id,
    )
    orders = await conn.fetch(
        """SELECT id::text AS id FROM orders
            WHERE customer_id = $1::uuid
               OR vendor_id IN (SELECT id FROM vendors WHERE user_id = $1::uuid)
               OR rider_id IN (SELECT id FROM riders WHERE user_id = $1::uuid)""",
        user_id,
    )
    return [r["id"] for r in requests], [r["id"] for r in orders]


_ROUND = "round(({col})::numeric, 2)::double precision"


async def _delete_unowned_texts(conn: asyncpg.Connection, pii: PiiCodec, phone: str | None) -> None:
    """Texts to `phone` stored without a user: their sealed recipient matches no SQL equality,
    so they are opened here. Every sender names the user today, so this finds next to nothing."""
    if phone is None:
        return
    rows = await conn.fetch(
        """SELECT id, recipient FROM notifications_outbox
            WHERE user_id IS NULL AND channel = 'sms' AND starts_with(recipient, $1)""",
        PREFIX,
    )
    ids = [r["id"] for r in rows if pii.open(RECIPIENT, r["recipient"]) == phone]
    if ids:
        await conn.execute("DELETE FROM notifications_outbox WHERE id = ANY($1::bigint[])", ids)


async def erase(conn: asyncpg.Connection, pii: PiiCodec, user_id: str) -> str | None:
    """Tombstone the user and everything that names them (call inside a transaction, with the
    user row locked). Returns the user's vendor id, if any."""
    uid = user_id
    phone = pii.open("phone", await conn.fetchval("SELECT phone FROM users WHERE id = $1::uuid", uid))
    await conn.execute(
        """UPDATE users SET phone = 'erased:' || id::text, first_name = $2, last_name = $2, email = NULL,
                  locale = NULL, avatar_url = NULL, password_hash = '!erased', totp_secret = NULL,
                  totp_enabled = false, phone_verified = false, disabled = true, disabled_at = now(),
                  disabled_reason = 'erased', erased_at = now(), updated_at = now(),
                  phone_index = NULL, email_index = NULL, name_index = NULL
            WHERE id = $1::uuid""",
        uid,
        TOMBSTONE,
    )
    # Credentials and what only served them.
    await conn.execute("DELETE FROM refresh_tokens WHERE user_id = $1::uuid", uid)
    await conn.execute("DELETE FROM verification_codes WHERE user_id = $1::uuid", uid)
    await conn.execute("DELETE FROM account_codes WHERE user_id = $1::uuid", uid)
    await conn.execute("DELETE FROM device_tokens WHERE user_id = $1::uuid", uid)  # notifications (issue 10)
    await conn.execute("DELETE FROM notification_settings WHERE user_id = $1::uuid", uid)
    await conn.execute(  # what others were told about the person's requests or kitchen (texts, names)
        """DELETE FROM notifications_outbox
            WHERE data->>'request_id' IN (SELECT id::text FROM meal_requests WHERE customer_id = $1::uuid)
               OR data->>'vendor_id' IN (SELECT id::text FROM vendors WHERE user_id = $1::uuid)""",
        uid,
    )
    await conn.execute("DELETE FROM notifications_outbox WHERE user_id = $1::uuid OR recipient = $2", uid, phone)
    await _delete_unowned_texts(conn, pii, phone)
    await conn.execute("DELETE FROM command_replies WHERE user_id = $1::uuid", uid)
    # As a customer: where food went, and what they wrote.
    requests = "(SELECT id FROM meal_requests WHERE customer_id = $1::uuid)"
    await conn.execute(
        f"""UPDATE meal_requests SET address_line = $2, notes = NULL,
                   delivery_lat = {_ROUND.format(col="delivery_lat")},
                   delivery_lng = {_ROUND.format(col="delivery_lng")}
             WHERE customer_id = $1::uuid""",
        uid,
        TOMBSTONE,
    )
    await conn.execute(
        f"""UPDATE negotiation_events e SET payload = jsonb_set(jsonb_set(jsonb_set(jsonb_set(e.payload,
                   '{{request,addressLine}}', to_jsonb($2::text)), '{{request,notes}}', 'null'::jsonb),
                   '{{request,deliveryLat}}', to_jsonb(r.delivery_lat)),
                   '{{request,deliveryLng}}', to_jsonb(r.delivery_lng))
              FROM meal_requests r
             WHERE r.id = e.request_id AND e.request_id IN {requests}
               AND jsonb_typeof(e.payload -> 'request') = 'object'""",
        uid,
        TOMBSTONE,
    )
    # What they wrote to vendors: counter-offer messages.
    await conn.execute(
        f"""UPDATE negotiation_events SET payload = payload - 'message'
             WHERE request_id IN {requests} AND payload ? 'message'""",
        uid,
    )
    await conn.execute(
        f"""UPDATE orders SET delivery_code = NULL,
                   delivery_lat = {_ROUND.format(col="delivery_lat")},
                   delivery_lng = {_ROUND.format(col="delivery_lng")}
             WHERE customer_id = $1::uuid""",
        uid,
    )
    await conn.execute(
        """UPDATE order_events e SET payload = jsonb_set(jsonb_set(e.payload,
                   '{order,deliveryLat}', to_jsonb(o.delivery_lat)), '{order,deliveryLng}', to_jsonb(o.delivery_lng))
                   #- '{order,deliveryCode}'
              FROM orders o
             WHERE o.id = e.order_id AND o.customer_id = $1::uuid AND jsonb_typeof(e.payload -> 'order') = 'object'""",
        uid,
    )
    # Their words in order events: a cancel reason and a rating comment.
    for key, value in (("reason", f"to_jsonb('{TOMBSTONE}'::text)"), ("comment", "'null'::jsonb")):
        await conn.execute(
            f"""UPDATE order_events e SET payload = jsonb_set(e.payload, '{{event,{key}}}', {value})
                  FROM orders o
                 WHERE o.id = e.order_id AND o.customer_id = $1::uuid
                   AND e.payload -> 'event' ->> 'by' = 'customer' AND e.payload -> 'event' ? '{key}'""",
            uid,
        )
    await conn.execute("UPDATE reviews SET comment = NULL WHERE customer_id = $1::uuid", uid)
    # As a vendor: the business name may be the person's; it leaves matching and search.
    vendor_id: str | None = await conn.fetchval(
        """UPDATE vendors SET display_name = $2, verified = false, categories = '{}', updated_at = now()
            WHERE user_id = $1::uuid RETURNING id::text""",
        uid,
        VENDOR_TOMBSTONE,
    )
    if vendor_id is not None:
        # Their payout bank account goes; payments keep the provider's subaccount code.
        await conn.execute("DELETE FROM vendor_settlements WHERE vendor_id = $1::uuid", vendor_id)
        await conn.execute("UPDATE offers SET vendor_name = $2 WHERE vendor_id = $1::uuid", vendor_id, VENDOR_TOMBSTONE)
        await conn.execute(
            """UPDATE negotiation_events SET payload = jsonb_set(payload, '{offer,vendorName}', to_jsonb($2::text))
                WHERE payload -> 'offer' ->> 'vendorId' = $1""",
            vendor_id,
            VENDOR_TOMBSTONE,
        )
    # As a rider: where they went.
    await conn.execute(
        "DELETE FROM rider_locations WHERE rider_id IN (SELECT id FROM riders WHERE user_id = $1::uuid)", uid
    )
    await conn.execute(
        """UPDATE riders SET last_lat = NULL, last_lng = NULL, online = false, updated_at = now()
            WHERE user_id = $1::uuid""",
        uid,
    )
    return vendor_id
