"""Stored history for analytics tests: requests, offers, orders and their events written
straight into PostgreSQL with chosen times (the rows the actors would have written), so a
test knows every expected figure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from tests.helpers import Client


@dataclass
class Vendor:
    id: uuid.UUID
    user_id: str
    token: str


async def vendor(client: Client, db: asyncpg.Connection, name: str) -> Vendor:
    reg = await client.register("VENDOR")
    vid = uuid.uuid4()
    await db.execute(
        """INSERT INTO vendors (id, user_id, display_name, lat, lng, km_service_area, categories, verified)
           VALUES ($1, $2, $3, 6.5, 3.4, 10, '{}', true)""",
        vid,
        uuid.UUID(reg["user"]["id"]),
        name,
    )
    return Vendor(vid, reg["user"]["id"], reg["tokens"]["accessToken"])


async def request(db: asyncpg.Connection, customer_id: str, category: str, created: datetime, status: str) -> uuid.UUID:
    rid = uuid.uuid4()
    await db.execute(
        """INSERT INTO meal_requests (id, customer_id, category, budget_min_kobo, budget_max_kobo, delivery_lat,
               delivery_lng, address_line, status, expires_at, max_vendor_offers, created_at)
           VALUES ($1, $2, $3, 100000, 900000, 6.5, 3.4, 'somewhere', $4, $5, 10, $5)""",
        rid,
        uuid.UUID(customer_id),
        category,
        status,
        created,
    )
    await event(db, "negotiation_events", rid, 1, {"request": {"id": str(rid)}})
    return rid


async def offer(
    db: asyncpg.Connection, request_id: uuid.UUID, v: Vendor, created: datetime, status: str, rounds: int = 0
) -> uuid.UUID:
    oid = uuid.uuid4()
    await db.execute(
        """INSERT INTO offers (id, request_id, vendor_id, vendor_name, price_kobo, status, round, created_at,
               updated_at) VALUES ($1, $2, $3, 'v', 300000, $4, $5, $6, $6)""",
        oid,
        request_id,
        v.id,
        status,
        rounds,
        created,
    )
    seq = await db.fetchval(
        "SELECT coalesce(max(seq), 0) + 1 FROM negotiation_events WHERE request_id = $1", request_id
    )
    await event(db, "negotiation_events", request_id, seq, {"offer": {"id": str(oid)}})
    if status == "ACCEPTED":
        await db.execute("UPDATE meal_requests SET accepted_offer_id = $2 WHERE id = $1", request_id, oid)
    return oid


async def order(
    db: asyncpg.Connection,
    request_id: uuid.UUID,
    offer_id: uuid.UUID,
    customer_id: str,
    v: Vendor,
    amount: int,
    created: datetime,
    statuses: list[tuple[str, datetime]],
) -> uuid.UUID:
    """An order created at `created` that went through `statuses` (status, at) in turn."""
    oid = uuid.uuid4()
    final = statuses[-1][0] if statuses else "PENDING_PAYMENT"
    confirmed = next((at for s, at in statuses if s == "CONFIRMED"), None)
    await db.execute(
        """INSERT INTO orders (id, request_id, offer_id, customer_id, vendor_id, amount_kobo, status, delivery_lat,
               delivery_lng, confirmed_at, created_at, updated_at, seq)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 6.5, 3.4, $8, $9, $9, $10)""",
        oid,
        request_id,
        offer_id,
        uuid.UUID(customer_id),
        v.id,
        amount,
        final,
        confirmed,
        created,
        len(statuses),
    )
    await db.execute("UPDATE meal_requests SET order_id = $2 WHERE id = $1", request_id, oid)
    for seq, (status, at) in enumerate(statuses, start=1):
        body = {"seq": seq, "kind": "status", "status": status, "by": "test", "at": at.isoformat()}
        await event(db, "order_events", oid, seq, {"order": {"id": str(oid)}, "event": body})
    return oid


async def event(db: asyncpg.Connection, table: str, key: uuid.UUID, seq: int, payload: dict[str, Any]) -> None:
    """An event row committed now (its created_at is the commit's, as the writer's rows are)."""
    if table == "negotiation_events":
        await db.execute(
            "INSERT INTO negotiation_events (request_id, seq, kind, payload, targets) VALUES ($1, $2, 'e', $3, '[]')",
            key,
            seq,
            orjson.dumps(payload).decode(),
        )
    else:
        await db.execute(
            "INSERT INTO order_events (order_id, seq, kind, payload) VALUES ($1, $2, 'status', $3)",
            key,
            seq,
            orjson.dumps(payload).decode(),
        )


def at(base: datetime, **delta: float) -> datetime:
    return base + timedelta(**delta)
