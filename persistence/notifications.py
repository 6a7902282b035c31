"""Storage of notifications (issue 10, docs/NOTIFICATIONS.md): the outbox rows each event
writes, push device tokens, quiet hours, and the dispatcher's reads and settlements.

Producers write their rows in the SAME transaction as the change they announce:
- the negotiation and order stores append `negotiation_rows(change)` / `order_rows(change)` to
  their write-behind group (one hook call each, nothing else of theirs changes);
- the auth code paths call `enqueue_text` on their transaction's connection.

A templated row has `kind` = an event type of `engine.notify_templates.EVENTS` and its
variables in `data` (plus `request_id`/`order`/`vendor_id` that no text shows: the app's deep
link, and what erasure deletes by; rendered by the dispatcher in the recipient's locale, so a locale change
applies to what is still queued); a row with `data` NULL carries its final text in `body`.
Push rows name the user (`recipient` 'user:<id>'); SMS rows carry the phone sealed
(persistence.pii RECIPIENT) or 'user:<id>' when the phone is read at delivery.

Style: plain SQL strings (short statements, several with unnest/ANY arrays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from engine import notify_templates as t
from engine import orders as o
from engine.order_actor import OrderChange
from engine.ports import NegotiationChange
from persistence.db import RawJson
from persistence.writer import Statement

Row = tuple[Statement, tuple[Any, ...]]
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

# ---------------------------------------------------------------- write-behind rows

# After the stores' own notification row (45), before the clientMsgId reply (50).
NOTIFY_USER = Statement(
    "notify_user",
    """INSERT INTO notifications_outbox (user_id, channel, kind, recipient, body, data, expires_at)
       VALUES ($1::uuid, $2, $3, 'user:' || $4, '', $5::jsonb, $6)""",
    46,
)
# To vendors by vendor id (their user ids are joined in), with the distance from the request's
# delivery point added to the variables when lat/lng are given (request.nearby).
NOTIFY_VENDORS = Statement(
    "notify_vendors",
    """INSERT INTO notifications_outbox (user_id, channel, kind, recipient, body, data, expires_at)
       SELECT v.user_id, 'push', $2, 'user:' || v.user_id::text, '',
              CASE WHEN $5::float8 IS NULL THEN $3::jsonb
                   ELSE $3::jsonb || jsonb_build_object('distance_km', round((2 * 6371 * asin(sqrt(
                        power(sin(radians(v.lat - $5::float8) / 2), 2)
                        + cos(radians($5::float8)) * cos(radians(v.lat))
                        * power(sin(radians(v.lng - $6::float8) / 2), 2))))::numeric, 1)::text) END,
              $4
         FROM vendors v WHERE v.id = ANY($1::uuid[])""",
    46,
)


def _json(data: Mapping[str, object]) -> RawJson:
    return RawJson(orjson.dumps({k: str(v) for k, v in data.items()}).decode())


def _to_user(user_id: str, event: str, data: Mapping[str, object], expires: datetime | None = None) -> list[Row]:
    """A push row, plus an SMS row for the events also sent by SMS."""
    channels = ("push", "sms") if event in t.SMS_EVENTS else ("push",)
    return [(NOTIFY_USER, (user_id, ch, event, user_id, _json(data), expires)) for ch in channels]


def _to_vendors(
    vendor_ids: Sequence[str],
    event: str,
    data: Mapping[str, object],
    expires: datetime | None = None,
    near: tuple[float, float] | None = None,
) -> Row:
    lat, lng = near if near is not None else (None, None)
    return (NOTIFY_VENDORS, (list(vendor_ids), event, _json(data), expires, lat, lng))


_NEGOTIATION_KINDS = frozenset({"request:new", "offer:new", "offer:countered", "offer:accepted", "offer:rejected"})


def negotiation_rows(change: NegotiationChange) -> list[Row]:
    """The notifications of one negotiation command: a new request to the vendors near it, a new
    offer to the customer, a counter, acceptance or rejection to the offer's vendor."""
    req = change.request
    rows: list[Row] = []
    for e in change.events:
        if e.kind not in _NEGOTIATION_KINDS:  # most writes (revisions): nothing to tell, cheaply
            continue
        if e.kind == "request:new":
            if change.nearby:
                data = {"dish": req.category, "budget": t.budget(req.budget_min_kobo, req.budget_max_kobo)}
                near = (req.delivery_lat, req.delivery_lng)
                rows.append(
                    _to_vendors(
                        change.nearby,
                        "request.nearby",
                        {**data, "request_id": req.id},
                        expires=req.expires_at,
                        near=near,
                    )
                )
            continue
        offer = req.offers.get(e.payload["offer"]["id"]) if "offer" in e.payload else None
        if offer is None:
            continue
        ids = {"dish": req.category, "request_id": req.id, "offer_id": offer.id, "vendor_id": offer.vendor_id}
        if e.kind == "offer:new":
            data = {**ids, "vendor_name": offer.vendor_name, "price": t.naira(offer.price_kobo)}
            rows += _to_user(req.customer_id, "offer.new", data, req.expires_at)
        elif e.kind == "offer:countered":
            price = t.naira(offer.counter_price_kobo or offer.price_kobo)
            data = {**ids, "counterparty": "The customer", "price": price}
            rows.append(_to_vendors([offer.vendor_id], "offer.countered", data, expires=req.expires_at))
        elif e.kind == "offer:accepted":
            data = {**ids, "price": t.naira(offer.price_kobo), "order_id": e.payload.get("orderId", "")}
            rows.append(_to_vendors([offer.vendor_id], "offer.accepted", data))
        elif e.kind == "offer:rejected":
            rows.append(_to_vendors([offer.vendor_id], "offer.rejected", ids))
    return rows


_STATUS_EVENTS = {
    o.CONFIRMED: "order.confirmed",
    o.PREPARING: "order.preparing",
    o.READY: "order.ready",
    o.PICKED_UP: "order.picked_up",
    o.OUT_FOR_DELIVERY: "order.rider_arriving",
    o.DELIVERED: "order.delivered",
    o.CANCELED: "order.canceled",
}


def _cancel_reason(body: Mapping[str, Any]) -> str:
    """Who canceled, never the text a party typed (it is theirs: erasure removes it)."""
    by = body.get("by")
    if by in (o.CUSTOMER, o.VENDOR):
        return f"canceled by the {by}"
    return str(body.get("reason", "")).replace("_", " ")


def order_rows(change: OrderChange) -> list[Row]:
    """The notifications of one order turn: status changes and rider assignment to the customer,
    a cancel also to the vendor when the vendor did not cancel it. (SLA breaches and locked codes
    already queue their own row in persistence.orders.)"""
    order = change.order
    rows: list[Row] = []
    for e in change.events:
        if e.kind != o.ORDER_STATUS:
            continue
        body = e.payload["event"]
        data: dict[str, object] = {"order_id": order.id[:8], "vendor_name": order.vendor_name}
        data |= {"order": order.id, "vendor_id": order.vendor_id}  # not in texts: deep links, erasure
        if body["kind"] == "rider_assigned":
            rows += _to_user(order.customer_id, "rider.assigned", data)
            continue
        event = _STATUS_EVENTS.get(body["status"]) if body["kind"] == "status" else None
        if event is None:
            continue
        data |= {"total": t.naira(order.amount_kobo), "eta_minutes": order.eta_minutes or "a few"}
        data["reason"] = _cancel_reason(body)
        rows += _to_user(order.customer_id, event, data)
        if event == "order.canceled" and body.get("by") != o.VENDOR:
            rows += _to_user(order.vendor_user_id, event, data)
    return rows


# ---------------------------------------------------------------- in a caller's transaction


async def enqueue_text(conn: Conn, user_id: str | None, kind: str, sealed_phone: str, body: str) -> None:
    """A pending SMS with its final text (verification codes), in the caller's transaction."""
    await conn.execute(
        """INSERT INTO notifications_outbox (user_id, channel, kind, recipient, body)
           VALUES ($1::uuid, 'sms', $2, $3, $4)""",
        user_id,
        kind,
        sealed_phone,
        body,
    )


# ---------------------------------------------------------------- what the dispatcher reads


@dataclass(frozen=True, slots=True)
class Recipient:
    """What delivering to one user needs. `phone` sealed; quiet hours in minutes of local day."""

    user_id: str
    locale: str | None
    phone: str | None
    quiet: tuple[int, int, str] | None  # (start, end, tz)
    tokens: tuple[str, ...]
    pushes_recent: int  # pushes sent to the user inside the cap window


async def recipients(
    pool: asyncpg.Pool, user_ids: Sequence[str], window_seconds: float, max_devices: int
) -> dict[str, Recipient]:
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return {}
    async with pool.acquire() as conn:
        users = await conn.fetch(
            """SELECT u.id::text AS id, u.locale, u.phone, s.quiet_start, s.quiet_end, s.tz
                 FROM users u LEFT JOIN notification_settings s ON s.user_id = u.id
                WHERE u.id = ANY($1::uuid[])""",
            ids,
        )
        tokens = await conn.fetch(
            """SELECT user_id::text AS uid, token FROM (
                   SELECT user_id, token, row_number() OVER (PARTITION BY user_id ORDER BY updated_at DESC) AS n
                     FROM device_tokens WHERE user_id = ANY($1::uuid[])) d
                WHERE n <= $2""",
            ids,
            max_devices,
        )
        recent = await conn.fetch(
            """SELECT user_id::text AS uid, count(*) AS n FROM notifications_outbox
                WHERE user_id = ANY($1::uuid[]) AND channel = 'push' AND status = 'sent'
                  AND sent_at > now() - make_interval(secs => $2::float8)
                GROUP BY user_id""",
            ids,
            window_seconds,
        )
    by_user: dict[str, list[str]] = {}
    for r in tokens:
        by_user.setdefault(r["uid"], []).append(r["token"])
    counts = {r["uid"]: int(r["n"]) for r in recent}
    return {
        u["id"]: Recipient(
            u["id"],
            u["locale"],
            u["phone"],
            (u["quiet_start"], u["quiet_end"], u["tz"]) if u["quiet_start"] is not None else None,
            tuple(by_user.get(u["id"], ())),
            counts.get(u["id"], 0),
        )
        for u in users
    }


@dataclass(frozen=True, slots=True)
class Settle:
    """How one claimed row ends this round: `status` sent/skipped/dead, or pending with
    `next_at` (deferred, no attempt counted)."""

    id: int
    status: str
    outcome: str | None = None
    error: str | None = None
    next_at: datetime | None = None


async def settle(pool: asyncpg.Pool, outcomes: Sequence[Settle]) -> None:
    """Apply outcomes to rows still pending (a row settled elsewhere is left alone)."""
    if not outcomes:
        return
    await pool.execute(
        """UPDATE notifications_outbox AS o
              SET status = s.status, outcome = s.outcome,
                  last_error = coalesce(s.err, o.last_error),
                  sent_at = CASE WHEN s.status = 'sent' THEN now() ELSE o.sent_at END,
                  attempts = o.attempts + CASE WHEN s.status IN ('sent', 'dead') THEN 1 ELSE 0 END,
                  next_attempt_at = coalesce(s.next_at, o.next_attempt_at)
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                  AS s(id, status, outcome, err, next_at)
            WHERE o.id = s.id AND o.status = 'pending'""",
        [s.id for s in outcomes],
        [s.status for s in outcomes],
        [s.outcome for s in outcomes],
        [s.error[:1000] if s.error else None for s in outcomes],
        [s.next_at for s in outcomes],
    )


async def listing(pool: asyncpg.Pool, status: str, limit: int, before_id: int | None) -> list[asyncpg.Record]:
    """Rows of one status, newest first (admin): never the text, the variables or the phone."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT id, user_id::text AS user_id, channel, kind, status, outcome, attempts, last_error,
                  created_at, next_attempt_at, sent_at
             FROM notifications_outbox
            WHERE status = $1 AND ($3::bigint IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $2""",
        status,
        limit,
        before_id,
    )
    return rows


# ---------------------------------------------------------------- devices and quiet hours


async def put_device(
    conn: asyncpg.Connection, user_id: str, token: str, platform: str, session_id: str, cap: int
) -> bool:
    """Register (or move to this user and session) a device token; False when the user already
    has `cap` other tokens."""
    async with conn.transaction():
        await conn.execute(
            "SELECT 1 FROM users WHERE id = $1::uuid FOR UPDATE", user_id
        )  # one change per user at a time
        others = await conn.fetchval(
            "SELECT count(*) FROM device_tokens WHERE user_id = $1::uuid AND token <> $2", user_id, token
        )
        if others >= cap:
            return False
        await conn.execute(
            """INSERT INTO device_tokens (token, user_id, platform, session_id) VALUES ($1, $2::uuid, $3, $4)
               ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                   session_id = EXCLUDED.session_id, updated_at = now()""",
            token,
            user_id,
            platform,
            session_id,
        )
    return True


async def delete_device(conn: Conn, user_id: str, token: str) -> bool:
    result = await conn.execute("DELETE FROM device_tokens WHERE user_id = $1::uuid AND token = $2", user_id, token)
    return bool(result.endswith(" 1"))


async def delete_session_devices(conn: Conn, session_id: str) -> None:
    """Logout: the tokens the session registered stop receiving pushes."""
    await conn.execute("DELETE FROM device_tokens WHERE session_id = $1", session_id)


async def drop_tokens(pool: asyncpg.Pool, tokens: Sequence[str]) -> None:
    """FCM said these tokens are gone (UNREGISTERED / INVALID_ARGUMENT)."""
    if tokens:
        await pool.execute("DELETE FROM device_tokens WHERE token = ANY($1::text[])", list(tokens))


async def devices_of(conn: Conn, user_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT token, platform, updated_at FROM device_tokens WHERE user_id = $1::uuid ORDER BY updated_at DESC",
        user_id,
    )
    return rows


async def quiet_hours(conn: Conn, user_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT quiet_start, quiet_end, tz FROM notification_settings WHERE user_id = $1::uuid", user_id
    )
    return row


async def set_quiet_hours(conn: Conn, user_id: str, quiet: tuple[int, int] | None, tz: str) -> None:
    start, end = quiet if quiet is not None else (None, None)
    await conn.execute(
        """INSERT INTO notification_settings (user_id, quiet_start, quiet_end, tz) VALUES ($1::uuid, $2, $3, $4)
           ON CONFLICT (user_id) DO UPDATE SET quiet_start = $2, quiet_end = $3, tz = $4, updated_at = now()""",
        user_id,
        start,
        end,
        tz,
    )
