"""Storage of orders: the rows one order turn writes, loading an order actor, and the
committed-state reads of the HTTP API, the sweeper and ops.

`OrderStore` implements engine.order_actor.OrderStore: `record` encodes a change into rows at
once and hands them to the node's write-behind writer (one group commit with the orders
update, its `order_events`, a review and the vendor's rating, ops records and their outbox
notifications, and the clientMsgId reply); `load` rebuilds an `engine.orders.Order` from the
orders row joined with its vendor, offer, rider and review.

Style: every statement is pypika, rendered to SQL once at import (as persistence.negotiation).
The order row columns the actor writes are `_STATE_COLUMNS`, in one place: the UPDATE and the
row tuple both follow it. Reads return asyncpg Records; views are built at the edge
(`pocho_rt.views`).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pypika import Order as Sort
from pypika import PostgreSQLQuery, Table, Tuple
from pypika.queries import QueryBuilder

from engine import orders as o
from engine.assignment import ORDER_KIND
from engine.dispatch import Dispatch
from engine.order_actor import LoadedOrder, OrderChange
from persistence.db import RawJson
from persistence.negotiation import INSERT_REPLY
from persistence.notifications import order_rows as notification_rows
from persistence.shards import Fence
from persistence.sql import NOW, any_of, limit_param, param, params, postgres
from persistence.writer import Statement, Writer

orders = Table("orders")
order_events = Table("order_events")
ops_events = Table("order_ops_events")
outbox = Table("notifications_outbox")
reviews = Table("reviews")
vendors = Table("vendors")
replies = Table("command_replies")

# ---------------------------------------------------------------- write-behind statements

# What an order turn may change, in UPDATE parameter order ($2...; $1 is the id).
_STATE_COLUMNS = (
    "rider_id",
    "status",
    "payment_status",
    "eta_minutes",
    "delivery_code",
    "code_attempts",
    "seq",
    "sla_due_at",
    "confirmed_at",
    "picked_up_at",
    "sla_fired",
    "offered_rider_id",
    "offer_expires_at",
    "skipped_riders",
    "dispatch_retry_at",
    "offers_made",
    "updated_at",
)


def _update_order_sql() -> str:
    q = PostgreSQLQuery.update(orders)
    for i, col in enumerate(_STATE_COLUMNS, start=2):
        q = q.set(orders.field(col), param(i))
    return str(q.where(orders.id == param(1)))


def _insert(table: Table, *cols: str) -> str:
    return str(postgres(PostgreSQLQuery.into(table).columns(*cols).insert(*params(len(cols)))))


# Statement order: after the meal request's INSERT_ORDER (30), so an order created and changed
# in one group exists before its update; logs and notifications after; the reply (50) last.
UPDATE_ORDER = Statement("order_update", _update_order_sql(), 32, key=0)
INSERT_EVENT = Statement("order_event", _insert(order_events, "order_id", "seq", "kind", "payload", "audiences"), 41)
INSERT_REVIEW = Statement(
    "review", _insert(reviews, "order_id", "customer_id", "vendor_id", "rider_id", "rating", "comment"), 42
)
RATE_VENDOR = Statement(
    "vendor_rating",
    str(
        PostgreSQLQuery.update(vendors)
        .set(vendors.rating_sum, vendors.rating_sum + param(2))
        .set(vendors.rating_count, vendors.rating_count + 1)
        .where(vendors.id == param(1))
    ),
    43,
)
INSERT_OPS = Statement("order_ops_event", _insert(ops_events, "order_id", "kind", "details"), 44)
INSERT_NOTIFICATION = Statement(
    "order_notification", _insert(outbox, "user_id", "channel", "kind", "recipient", "body"), 45
)


def _state_row(order: o.Order, due_at: datetime | None) -> tuple[Any, ...]:
    d = order.dispatch
    return (
        order.id,
        order.rider_id,
        order.status,
        order.payment_status,
        order.eta_minutes,
        order.delivery_code,
        order.code_attempts,
        order.seq,
        due_at,
        order.confirmed_at,
        order.picked_up_at,
        sorted(order.sla_fired),
        d.offered_rider_id,
        d.offer_expires_at,
        list(d.skipped),
        d.retry_at,
        d.offers_made,
        order.updated_at,
    )


def _ops_rows(order: o.Order, e: o.Event) -> list[tuple[Statement, tuple[Any, ...]]]:
    """An ops record and the push notification it queues (user, or ops when none)."""
    p = e.payload
    kind = "sla_breach" if str(p["kind"]).startswith("sla:") else str(p["kind"])
    user = p.get("notifyUserId")
    return [
        (INSERT_OPS, (order.id, p["kind"], RawJson(orjson.dumps(p).decode()))),
        (INSERT_NOTIFICATION, (user, "push", kind, f"user:{user}" if user else "ops", p["body"])),
    ]


# ---------------------------------------------------------------- reads

_o = Table("orders", alias="o")
_v = Table("vendors", alias="v")
_f = Table("offers", alias="f")
_r = Table("riders", alias="r")
_rv = Table("reviews", alias="rv")


def _joined() -> QueryBuilder:
    """An order with what its actor and its views need from the vendor, offer, rider, review."""
    return (
        PostgreSQLQuery.from_(_o)
        .join(_v)
        .on(_v.id == _o.vendor_id)
        .join(_f)
        .on(_f.id == _o.offer_id)
        .left_join(_r)
        .on(_r.id == _o.rider_id)
        .left_join(_rv)
        .on(_rv.order_id == _o.id)
        .select(
            _o.star,
            _v.user_id.as_("vendor_user_id"),
            _v.display_name.as_("vendor_name"),
            _v.lat.as_("pickup_lat"),
            _v.lng.as_("pickup_lng"),
            _f.prep_minutes.as_("offer_prep_minutes"),
            _r.user_id.as_("rider_user_id"),
            _rv.rating.as_("rating"),
        )
    )


_ORDER_BY_ID = str(_joined().where(_o.id == param(1)))
_RECENT_REPLIES = str(
    limit_param(
        PostgreSQLQuery.from_(replies)
        .select(replies.user_id, replies.client_msg_id, replies.reply)
        .where(replies.actor_key == param(1))
        .orderby(replies.created_at, order=Sort.desc),
        2,
    )
)
_EVENTS_SINCE = str(
    limit_param(
        PostgreSQLQuery.from_(order_events)
        .select(order_events.seq, order_events.kind, order_events.payload, order_events.audiences)
        .where((order_events.order_id == param(1)) & (order_events.seq > param(2)))
        .orderby(order_events.seq),
        3,
    )
)
_TERMINAL = sorted(o.TERMINAL)
_DUE = str(
    limit_param(
        PostgreSQLQuery.from_(orders)
        .select(orders.id)
        .where((orders.sla_due_at <= NOW) & orders.status.notin(_TERMINAL))
        .orderby(orders.sla_due_at),
        1,
    )
)
_UNPAID = str(
    limit_param(
        PostgreSQLQuery.from_(orders)
        .select(orders.id)
        .where((orders.status == o.PENDING_PAYMENT) & orders.sla_due_at.isnull() & (orders.created_at <= param(2)))
        .orderby(orders.created_at),
        1,
    )
)
_OPS_EVENTS = {
    by_kind: str(
        limit_param(
            PostgreSQLQuery.from_(ops_events)
            .select(ops_events.id, ops_events.order_id, ops_events.kind, ops_events.details, ops_events.created_at)
            .where(ops_events.kind == param(2) if by_kind else ops_events.id.notnull())
            .orderby(ops_events.id, order=Sort.desc),
            1,
        )
    )
    for by_kind in (False, True)
}

PARTY_ROLES = ("CUSTOMER", "VENDOR", "RIDER", "ADMIN")
_PARTY_COLUMN = {"CUSTOMER": _o.customer_id, "VENDOR": _v.user_id, "RIDER": _r.user_id}


def _list_sql(role: str, by_status: bool, after: bool) -> str:
    """$1 limit, then the party's user id (not for ADMIN), the statuses, the cursor."""
    q = limit_param(_joined().orderby(_o.created_at, order=Sort.desc).orderby(_o.id, order=Sort.desc), 1)
    n = 1
    if role in _PARTY_COLUMN:
        n += 1
        q = q.where(_PARTY_COLUMN[role] == param(n))
    if by_status:
        n += 1
        q = q.where(_o.status == any_of(param(n, "text[]")))
    if after:
        q = q.where(Tuple(_o.created_at, _o.id) < Tuple(param(n + 1), param(n + 2)))
    return str(q)


_LIST = {(r, s, a): _list_sql(r, s, a) for r in PARTY_ROLES for s in (False, True) for a in (False, True)}


# ---------------------------------------------------------------- rows -> engine objects


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def order_from_row(row: asyncpg.Record) -> o.Order:
    """A stored order (`_joined` columns) as the engine's Order."""
    return o.Order(
        id=str(row["id"]),
        request_id=str(row["request_id"]),
        offer_id=str(row["offer_id"]),
        customer_id=str(row["customer_id"]),
        vendor_id=str(row["vendor_id"]),
        vendor_user_id=str(row["vendor_user_id"]),
        vendor_name=row["vendor_name"],
        pickup_lat=row["pickup_lat"],
        pickup_lng=row["pickup_lng"],
        amount_kobo=row["amount_kobo"],
        status=row["status"],
        payment_status=row["payment_status"],
        delivery_lat=row["delivery_lat"],
        delivery_lng=row["delivery_lng"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        prep_minutes=row["offer_prep_minutes"] or o.DEFAULT_PREP_MINUTES,
        rider_id=_s(row["rider_id"]),
        rider_user_id=_s(row["rider_user_id"]),
        eta_minutes=row["eta_minutes"],
        delivery_code=row["delivery_code"],
        code_attempts=row["code_attempts"],
        confirmed_at=row["confirmed_at"],
        picked_up_at=row["picked_up_at"],
        seq=row["seq"],
        sla_fired=frozenset(row["sla_fired"]),
        rating=row["rating"],
        dispatch=Dispatch(
            offered_rider_id=_s(row["offered_rider_id"]),
            offer_expires_at=row["offer_expires_at"],
            skipped=tuple(str(r) for r in row["skipped_riders"]),
            retry_at=row["dispatch_retry_at"],
            offers_made=row["offers_made"],
        ),
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class OrderStore:
    def __init__(self, pool: asyncpg.Pool, writer: Writer, fence: Fence | None = None) -> None:
        self.pool = pool
        self.writer = writer
        self.fence = fence  # None on a single node: nothing to fence

    def record(self, change: OrderChange, after: asyncio.Future[None] | None = None) -> asyncio.Future[None]:
        """Encode the change now and queue it for the next group commit."""
        order = change.order
        rows: list[tuple[Statement, tuple[Any, ...]]] = []
        if self.fence is not None:  # first: a node that does not serve this shard writes nothing
            rows.extend(self.fence.rows(ORDER_KIND, order.id))
        rows.append((UPDATE_ORDER, _state_row(order, change.due_at)))
        encoded: dict[int, str] = {}
        for e in change.events:
            if e.kind == o.ORDER_STATUS:
                payload = orjson.dumps(e.payload).decode()
                encoded[e.seq] = payload
                body = e.payload["event"]
                rows.append((INSERT_EVENT, (order.id, e.seq, body["kind"], RawJson(payload), list(e.targets))))
                if body["kind"] == "rated":
                    rows.append(
                        (
                            INSERT_REVIEW,
                            (
                                order.id,
                                order.customer_id,
                                order.vendor_id,
                                order.rider_id,
                                body["rating"],
                                body["comment"],
                            ),
                        )
                    )
                    rows.append((RATE_VENDOR, (order.vendor_id, body["rating"])))
            elif e.kind == o.OPS:
                rows.extend(_ops_rows(order, e))
        change.payload_json = encoded
        if change.reply is not None:
            user_id, client_msg_id, reply = change.reply
            rows.append((INSERT_REPLY, (f"order:{order.id}", user_id, client_msg_id, reply)))
        rows.extend(notification_rows(change))  # notifications (issue 10): same transaction
        commit = self.writer.submit(rows, after=after)
        if self.fence is not None:
            self.fence.watch(commit)
        return commit

    async def load(self, order_id: str, reply_limit: int) -> LoadedOrder | None:
        oid = _uuid(order_id)
        if oid is None:
            return None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_ORDER_BY_ID, oid)
            if row is None:
                return None
            reply_rows = await conn.fetch(_RECENT_REPLIES, f"order:{order_id}", reply_limit)
        recent = {(str(r["user_id"]), r["client_msg_id"]): r["reply"] for r in reversed(reply_rows)}
        return LoadedOrder(order_from_row(row), recent)

    async def due(self, unpaid_before: datetime, limit: int = 500) -> list[str]:
        """Orders whose stored deadline passed, and unpaid ones no actor has held since their
        unpaid deadline (`unpaid_before` = now - the unpaid cancel time)."""
        async with self.pool.acquire() as conn:
            due = await conn.fetch(_DUE, limit)
            unpaid = await conn.fetch(_UNPAID, limit, unpaid_before)
        return list(dict.fromkeys(str(r["id"]) for r in (*due, *unpaid)))


# ---------------------------------------------------------------- committed-state reads


async def order_by_id(pool: asyncpg.Pool, order_id: str) -> asyncpg.Record | None:
    """The stored order with its joined columns (order_from_row); None if unknown or not a uuid."""
    oid = _uuid(order_id)
    return None if oid is None else await pool.fetchrow(_ORDER_BY_ID, oid)


async def events_since(pool: asyncpg.Pool, order_id: str, since_seq: int, limit: int) -> list[asyncpg.Record]:
    """Stored order:status events after `since_seq` (seq, kind, payload, audiences), oldest first."""
    oid = _uuid(order_id)
    if oid is None:
        return []
    rows: list[asyncpg.Record] = await pool.fetch(_EVENTS_SINCE, oid, since_seq, limit)
    return rows


async def list_orders(
    pool: asyncpg.Pool,
    *,
    role: str,
    user_id: str,
    statuses: tuple[str, ...] | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The orders of one party (ADMIN: everyone's), newest first, after a keyset cursor."""
    args: list[Any] = [limit]
    if role in _PARTY_COLUMN:
        args.append(uuid.UUID(user_id))
    if statuses is not None:
        args.append(list(statuses))
    if after is not None:
        args += [after[0], uuid.UUID(after[1])]
    rows: list[asyncpg.Record] = await pool.fetch(_LIST[role, statuses is not None, after is not None], *args)
    return rows


async def ops_events_recent(pool: asyncpg.Pool, limit: int, kind: str | None = None) -> list[asyncpg.Record]:
    """Ops records (SLA breaches, locked codes), newest first."""
    args: list[Any] = [limit] if kind is None else [limit, kind]
    rows: list[asyncpg.Record] = await pool.fetch(_OPS_EVENTS[kind is not None], *args)
    return rows


def encode_cursor(created_at: datetime, order_id: str) -> str:
    """Opaque keyset cursor: base64url of [createdAt, id] (microseconds kept)."""
    raw = orjson.dumps([created_at.isoformat(), order_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The (created_at, id) a cursor names; None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, order_id = orjson.loads(raw)
        at = datetime.fromisoformat(when)
        uuid.UUID(order_id)
    except (ValueError, TypeError):
        return None
    if at.tzinfo is None:
        return None
    return at, str(order_id)
