"""Storage of meal requests: the rows one negotiation command writes, and loading an actor.

`NegotiationStore` implements engine.ports.NegotiationStore: `record` encodes a change
into rows at once (the actor keeps mutating its state afterwards) and hands them to the
write-behind writer; `load` rebuilds a MealRequest from its snapshot rows.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import orjson
from pypika import Order, Parameter, PostgreSQLQuery, Table

from engine.negotiation import Event, MealRequest, NewOrder, Offer, offer_view, request_view
from engine.ports import Loaded, NegotiationChange
from persistence.db import RawJson
from persistence.writer import Statement, Writer

meal_requests = Table("meal_requests")
offers = Table("offers")
orders = Table("orders")
events = Table("negotiation_events")
replies = Table("command_replies")

_REQUEST_COLS = ("id", "customer_id", "category", "budget_min_kobo", "budget_max_kobo", "delivery_lat",
                 "delivery_lng", "address_line", "notes", "desired_at", "status", "expires_at",
                 "max_vendor_offers", "offer_count", "seq", "accepted_offer_id", "order_id", "created_at")
_OFFER_COLS = ("id", "request_id", "vendor_id", "vendor_name", "price_kobo", "details", "prep_minutes",
               "slot_from", "slot_to", "status", "counter_price_kobo", "round", "is_competitive", "over_budget",
               "created_at", "updated_at")
_ORDER_COLS = ("id", "request_id", "offer_id", "customer_id", "vendor_id", "amount_kobo", "status",
               "payment_status", "delivery_lat", "delivery_lng", "created_at", "updated_at")


def _params(n: int) -> list[Parameter]:
    return [Parameter(f"${i}") for i in range(1, n + 1)]


def _upsert(table: Table, cols: tuple[str, ...], mutable: tuple[str, ...]) -> str:
    q = PostgreSQLQuery.into(table).columns(*cols).insert(*_params(len(cols))).on_conflict("id")
    for col in mutable:
        q = q.do_update(col)
    return str(q)


_MUTABLE_REQUEST = ("status", "offer_count", "seq", "accepted_offer_id", "order_id", "expires_at")
_MUTABLE_OFFER = ("vendor_name", "price_kobo", "details", "prep_minutes", "slot_from", "slot_to", "status",
                  "counter_price_kobo", "round", "is_competitive", "over_budget", "updated_at")

# Statement order = foreign-key order: request, then offers, then the order, then logs.
UPSERT_REQUEST = Statement("meal_request", _upsert(meal_requests, _REQUEST_COLS, _MUTABLE_REQUEST), 10, key=0)
UPSERT_OFFER = Statement("offer", _upsert(offers, _OFFER_COLS, _MUTABLE_OFFER), 20, key=0)
INSERT_ORDER = Statement(
    "order", str(PostgreSQLQuery.into(orders).columns(*_ORDER_COLS).insert(*_params(len(_ORDER_COLS)))), 30)
INSERT_EVENT = Statement(
    "negotiation_event",
    str(PostgreSQLQuery.into(events).columns("request_id", "seq", "kind", "payload", "targets")
        .insert(*_params(5))), 40)
INSERT_REPLY = Statement(
    "command_reply",
    str(PostgreSQLQuery.into(replies).columns("actor_key", "user_id", "client_msg_id", "reply")
        .insert(*_params(4)).on_conflict("actor_key", "user_id", "client_msg_id").do_nothing()), 50)


# Ids go to asyncpg as strings (it encodes uuid text directly): no uuid objects per row.
def _request_row(r: MealRequest, offer_count: int) -> tuple[Any, ...]:
    return (r.id, r.customer_id, r.category, r.budget_min_kobo, r.budget_max_kobo,
            r.delivery_lat, r.delivery_lng, r.address_line, r.notes, r.desired_at, r.status, r.expires_at,
            r.max_vendor_offers, offer_count, r.seq, r.accepted_offer_id, r.order_id, r.created_at)


def _offer_row(o: Offer) -> tuple[Any, ...]:
    return (o.id, o.request_id, o.vendor_id, o.vendor_name, o.price_kobo, o.details, o.prep_minutes, o.slot_from,
            o.slot_to, o.status, o.counter_price_kobo, o.round, o.is_competitive, o.over_budget, o.created_at,
            o.updated_at)


def _order_row(o: NewOrder) -> tuple[Any, ...]:
    return (o.id, o.request_id, o.offer_id, o.customer_id, o.vendor_id, o.amount_kobo, o.status, o.payment_status,
            o.delivery_lat, o.delivery_lng, o.created_at, o.created_at)


def _event_row(request_id: str, e: Event, payload: RawJson) -> tuple[Any, ...]:
    return (request_id, e.seq, e.kind, payload, RawJson(orjson.dumps(e.targets).decode()))


class NegotiationStore:
    def __init__(self, pool: asyncpg.Pool, writer: Writer) -> None:
        self.pool = pool
        self.writer = writer

    def record(self, change: NegotiationChange, after: asyncio.Future[None] | None = None) -> asyncio.Future[None]:
        """Encode the change now and queue it for the next group commit."""
        req = change.request
        rows: list[tuple[Statement, tuple[Any, ...]]] = [(UPSERT_REQUEST, _request_row(req, change.offer_count))]
        rows.extend((UPSERT_OFFER, _offer_row(o)) for o in change.offers)
        if change.order is not None:
            rows.append((INSERT_ORDER, _order_row(change.order)))
        encoded = [RawJson(orjson.dumps(e.payload).decode()) for e in change.events]
        change.payload_json = list(encoded)
        rows.extend((INSERT_EVENT, _event_row(req.id, e, p)) for e, p in zip(change.events, encoded, strict=True))
        if change.reply is not None:
            user_id, client_msg_id, reply = change.reply
            rows.append((INSERT_REPLY, (f"meal_request:{req.id}", user_id, client_msg_id, reply)))
        return self.writer.submit(rows, after=after)

    async def load(self, request_id: str, reply_limit: int) -> Loaded | None:
        try:
            rid = uuid.UUID(request_id)
        except ValueError:
            return None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                str(PostgreSQLQuery.from_(meal_requests).select(*_REQUEST_COLS)
                    .where(meal_requests.id == Parameter("$1"))), rid)
            if row is None:
                return None
            offer_rows = await conn.fetch(
                str(PostgreSQLQuery.from_(offers).select(*_OFFER_COLS).where(offers.request_id == Parameter("$1"))
                    .orderby(offers.created_at)), rid)
            reply_rows = await conn.fetch(
                str(PostgreSQLQuery.from_(replies).select(replies.user_id, replies.client_msg_id, replies.reply)
                    .where(replies.actor_key == Parameter("$1")).orderby(replies.created_at, order=Order.desc)
                    .limit(reply_limit)), f"meal_request:{request_id}")
        req = _request(row)
        for o in offer_rows:
            req.offers[str(o["id"])] = _offer(o)
        recent = {(str(r["user_id"]), r["client_msg_id"]): r["reply"] for r in reversed(reply_rows)}
        return Loaded(req, recent)

    async def events_since(self, request_id: str, since_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored events after `since_seq`, oldest first (what a reconnecting watcher missed)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                str(PostgreSQLQuery.from_(events).select(events.seq, events.kind, events.payload, events.targets)
                    .where((events.request_id == Parameter("$1")) & (events.seq > Parameter("$2")))
                    .orderby(events.seq).limit(limit)),
                uuid.UUID(request_id), since_seq)
        return [dict(r) for r in rows]

    async def due_for_expiry(self, limit: int = 500) -> list[str]:
        """Open requests whose deadline passed (the sweeper hands them to their actors)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id FROM meal_requests WHERE status = 'OPEN' AND expires_at <= now() "
                "ORDER BY expires_at LIMIT $1", limit)
        return [str(r["id"]) for r in rows]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _request(row: Any) -> MealRequest:
    return MealRequest(
        id=str(row["id"]), customer_id=str(row["customer_id"]), category=row["category"],
        budget_min_kobo=row["budget_min_kobo"], budget_max_kobo=row["budget_max_kobo"],
        delivery_lat=row["delivery_lat"], delivery_lng=row["delivery_lng"], address_line=row["address_line"],
        notes=row["notes"], desired_at=row["desired_at"], status=row["status"], expires_at=row["expires_at"],
        max_vendor_offers=row["max_vendor_offers"], created_at=row["created_at"], seq=row["seq"],
        accepted_offer_id=_str(row["accepted_offer_id"]), order_id=_str(row["order_id"]),
    )


def _offer(o: Any) -> Offer:
    return Offer(
        id=str(o["id"]), request_id=str(o["request_id"]), vendor_id=str(o["vendor_id"]),
        vendor_name=o["vendor_name"], price_kobo=o["price_kobo"], details=o["details"],
        prep_minutes=o["prep_minutes"], slot_from=o["slot_from"], slot_to=o["slot_to"], status=o["status"],
        counter_price_kobo=o["counter_price_kobo"], round=o["round"], is_competitive=o["is_competitive"],
        over_budget=o["over_budget"], created_at=o["created_at"], updated_at=o["updated_at"],
    )


def _request_view(row: Any) -> dict[str, Any]:
    view = request_view(_request(row))
    view["offerCount"] = row["offer_count"]  # stored: the offers themselves are not loaded here
    return view


async def request_rows_view(pool: asyncpg.Pool, ids: list[str], *, open_only: bool = True) -> list[dict[str, Any]]:
    """Stored requests by id (read path: committed state), in the order of `ids`."""
    rows = await pool.fetch(
        f"SELECT {', '.join(_REQUEST_COLS)} FROM meal_requests WHERE id = ANY($1::uuid[])"
        + (" AND status = 'OPEN' AND expires_at > now()" if open_only else ""), ids)
    by_id = {str(r["id"]): r for r in rows}
    return [_request_view(by_id[i]) for i in ids if i in by_id]


async def list_requests(pool: asyncpg.Pool, *, customer_id: str | None, statuses: tuple[str, ...],
                        limit: int, before: Any = None) -> list[dict[str, Any]]:
    """Newest first; `customer_id` None lists everyone's (ops)."""
    q = (PostgreSQLQuery.from_(meal_requests).select(*_REQUEST_COLS)
         .where(meal_requests.status.isin(list(statuses)))
         .orderby(meal_requests.created_at, order=Order.desc).limit(limit))
    args: list[Any] = []
    if customer_id is not None:
        args.append(uuid.UUID(customer_id))
        q = q.where(meal_requests.customer_id == Parameter(f"${len(args)}"))
    if before is not None:
        args.append(before)
        q = q.where(meal_requests.created_at < Parameter(f"${len(args)}"))
    return [_request_view(r) for r in await pool.fetch(str(q), *args)]


async def request_detail(pool: asyncpg.Pool, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Stored request and its offers (oldest first), or None."""
    try:
        rid = uuid.UUID(request_id)
    except ValueError:
        return None
    row = await pool.fetchrow(f"SELECT {', '.join(_REQUEST_COLS)} FROM meal_requests WHERE id = $1", rid)
    if row is None:
        return None
    offer_rows = await pool.fetch(
        f"SELECT {', '.join(_OFFER_COLS)} FROM offers WHERE request_id = $1 ORDER BY created_at", rid)
    return _request_view(row), [offer_view(_offer(o)) for o in offer_rows]
