"""Storage of meal requests: the rows one negotiation command writes, loading an actor, and
the committed-state reads of the HTTP API and the negotiation service.

`NegotiationStore` implements engine.ports.NegotiationStore: `record` encodes a change
into rows at once (the actor keeps mutating its state afterwards) and hands them to the
write-behind writer; `load` rebuilds a MealRequest from its snapshot rows.

Style: every statement is pypika, rendered to SQL once at import (no query building per
call). The stored columns come from ONE definition, the engine dataclasses' fields
(`REQUEST_COLUMNS`, `OFFER_COLUMNS`, `ORDER_COLUMNS`): the insert statements, the row
tuples (`attrgetter` over the same names) and the loaders all follow
them, so a new engine field needs a migration adding its column. Reads return rows (dicts with
the address line and notes opened); the camelCase views are built at the edge (`pocho_rt.views`).

Personal data at rest (docs/USERS.md "Encryption at rest"): a request's address line and notes
are sealed at this boundary only, the same ciphertext in the row, in the `request` view of its
stored `request:new` payload and in stored replies holding that view. The actor's state and
everything published stay plaintext; a payload is encoded twice only when it holds the view.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any

import asyncpg
import orjson
from pypika import Order, PostgreSQLQuery, Table
from pypika import functions as fn
from pypika.dialects import PostgreSQLQueryBuilder

from engine.meal_request_actor import MEAL_REQUEST_KIND
from engine.negotiation import Event, MealRequest, NewOrder, Offer
from engine.negotiation_statuses import OPEN
from engine.ports import Loaded, NegotiationChange
from persistence.db import RawJson
from persistence.notifications import negotiation_rows as notification_rows
from persistence.pii import PiiCodec
from persistence.shards import Fence
from persistence.sql import NOW, any_of, limit_param, param, params, postgres
from persistence.writer import Statement, Writer

meal_requests = Table("meal_requests")
offers = Table("offers")
orders = Table("orders")
events = Table("negotiation_events")
replies = Table("command_replies")

# ---------------------------------------------------------------- the one column definition

# MealRequest's fields but its in-memory offers, then what only the table has: the stored
# offer count (read paths do not load offers).
REQUEST_FIELDS = tuple(f.name for f in fields(MealRequest) if f.name != "offers")
REQUEST_COLUMNS = (*REQUEST_FIELDS, "offer_count")
OFFER_COLUMNS = tuple(f.name for f in fields(Offer))
# NewOrder's fields, then updated_at (= created_at at birth).
ORDER_COLUMNS = (*(f.name for f in fields(NewOrder)), "updated_at")
_EVENT_COLUMNS = ("request_id", "seq", "kind", "payload", "targets")
_REPLY_COLUMNS = ("actor_key", "user_id", "client_msg_id", "reply")

_MUTABLE_REQUEST = ("status", "offer_count", "seq", "accepted_offer_id", "order_id", "expires_at")
_MUTABLE_OFFER = tuple(c for c in OFFER_COLUMNS if c not in ("id", "request_id", "vendor_id", "created_at"))


# Row tuples in column order (ids stay strings: asyncpg encodes uuid text directly).
_request_fields = attrgetter(*REQUEST_FIELDS)
_offer_row: Callable[[Offer], tuple[Any, ...]] = attrgetter(*OFFER_COLUMNS)
_order_fields = attrgetter(*ORDER_COLUMNS[:-1])


_ADDRESS_AT = REQUEST_FIELDS.index("address_line")
assert REQUEST_FIELDS[_ADDRESS_AT + 1] == "notes"  # adjacent: _request_row replaces both at once
_SEALS_MAX = 100_000  # requests whose sealed address and notes a store remembers


def _request_row(r: MealRequest, offer_count: int, address: str | None, notes: str | None) -> tuple[Any, ...]:
    """The row with the address line and notes as sealed (`address`, `notes`)."""
    f = _request_fields(r)
    return (*f[:_ADDRESS_AT], address, notes, *f[_ADDRESS_AT + 2 :], offer_count)


def _order_row(o: NewOrder) -> tuple[Any, ...]:
    return (*_order_fields(o), o.created_at)  # updated_at = created_at at birth


def _insert(table: Table, cols: tuple[str, ...]) -> PostgreSQLQueryBuilder:
    return postgres(PostgreSQLQuery.into(table).columns(*cols).insert(*params(len(cols))))


def _upsert(table: Table, cols: tuple[str, ...], mutable: tuple[str, ...]) -> str:
    q = _insert(table, cols).on_conflict("id")
    for col in mutable:
        q = q.do_update(col)
    return str(q)


# ---------------------------------------------------------------- write-behind statements

# Statement order = foreign-key order: request, then offers, then the order, then logs.
UPSERT_REQUEST = Statement(
    "meal_request", _upsert(meal_requests, REQUEST_COLUMNS, _MUTABLE_REQUEST), 10, key=REQUEST_COLUMNS.index("id")
)
UPSERT_OFFER = Statement("offer", _upsert(offers, OFFER_COLUMNS, _MUTABLE_OFFER), 20, key=OFFER_COLUMNS.index("id"))
INSERT_ORDER = Statement("order", str(_insert(orders, ORDER_COLUMNS)), 30)
INSERT_EVENT = Statement("negotiation_event", str(_insert(events, _EVENT_COLUMNS)), 40)
INSERT_REPLY = Statement(
    "command_reply",
    str(_insert(replies, _REPLY_COLUMNS).on_conflict("actor_key", "user_id", "client_msg_id").do_nothing()),
    50,
)

# ---------------------------------------------------------------- reads

_OPEN = (meal_requests.status == "OPEN") & (meal_requests.expires_at > NOW)

_REQUEST_BY_ID = str(PostgreSQLQuery.from_(meal_requests).select(*REQUEST_COLUMNS).where(meal_requests.id == param(1)))
_OFFERS_OF_REQUEST = str(
    PostgreSQLQuery.from_(offers).select(*OFFER_COLUMNS).where(offers.request_id == param(1)).orderby(offers.created_at)
)
_RECENT_REPLIES = str(
    limit_param(
        PostgreSQLQuery.from_(replies)
        .select(replies.user_id, replies.client_msg_id, replies.reply)
        .where(replies.actor_key == param(1))
        .orderby(replies.created_at, order=Order.desc),
        2,
    )
)
_EVENTS_SINCE = str(
    limit_param(
        PostgreSQLQuery.from_(events)
        .select(events.seq, events.kind, events.payload, events.targets)
        .where((events.request_id == param(1)) & (events.seq > param(2)))
        .orderby(events.seq),
        3,
    )
)
_DUE_FOR_EXPIRY = str(
    limit_param(
        PostgreSQLQuery.from_(meal_requests)
        .select(meal_requests.id)
        .where((meal_requests.status == "OPEN") & (meal_requests.expires_at <= NOW))
        .orderby(meal_requests.expires_at),
        1,
    )
)
_OPEN_BY_IDS = str(
    PostgreSQLQuery.from_(meal_requests)
    .select(*REQUEST_COLUMNS)
    .where((meal_requests.id == any_of(param(1, "uuid[]"))) & _OPEN)
)
_COUNT_OPEN = str(
    PostgreSQLQuery.from_(meal_requests)
    .select(fn.Count("*"))
    .where((meal_requests.customer_id == param(1)) & _OPEN & (meal_requests.id != param(2)))
)
_REQUEST_OF_OFFER = str(PostgreSQLQuery.from_(offers).select(offers.request_id).where(offers.id == param(1)))


def _list_sql(by_customer: bool, before: bool) -> str:
    """$1 statuses, $2 limit, then the customer id and the `before` time when filtered."""
    q = limit_param(
        PostgreSQLQuery.from_(meal_requests)
        .select(*REQUEST_COLUMNS)
        .where(meal_requests.status == any_of(param(1, "text[]")))
        .orderby(meal_requests.created_at, order=Order.desc),
        2,
    )
    n = 2
    if by_customer:
        n += 1
        q = q.where(meal_requests.customer_id == param(n))
    if before:
        n += 1
        q = q.where(meal_requests.created_at < param(n))
    return str(q)


_LIST = {(c, b): _list_sql(c, b) for c in (False, True) for b in (False, True)}


# ---------------------------------------------------------------- rows <-> engine objects


def _event_row(request_id: str, e: Event, payload: RawJson) -> tuple[Any, ...]:
    return (request_id, e.seq, e.kind, payload, _targets_json(e.targets))


@functools.lru_cache(maxsize=4096)
def _targets_json(targets: tuple[tuple[str, str], ...]) -> RawJson:
    """An event's audiences as JSON: the same few lists over and over (per kind and vendor)."""
    return RawJson(orjson.dumps(targets).decode())


def _plain(value: Any) -> Any:
    """Engine objects hold ids as strings."""
    return str(value) if isinstance(value, uuid.UUID) else value


def request_from_row(row: asyncpg.Record, offers: dict[str, Offer] | None = None) -> MealRequest:
    """A stored request (`row` holds at least REQUEST_FIELDS) with `offers` (none by default)."""
    return MealRequest(**{name: _plain(row[name]) for name in REQUEST_FIELDS}, offers=offers or {})


def offer_from_row(row: asyncpg.Record) -> Offer:
    return Offer(**{name: _plain(row[name]) for name in OFFER_COLUMNS})


class _Seals:
    """Each live request's sealed address line and notes. They never change after creation, and
    every write of a request rewrites its whole row: sealing them once per request instead of
    once per write keeps AES-GCM off the hot path (a fresh nonce per write would buy nothing).
    Every snapshot must carry them although an existing row keeps its own: the writer keeps
    only the newest snapshot of a request per group, which may be the one that inserts it.
    Dropped when the request closes; the oldest goes first past `_SEALS_MAX`."""

    def __init__(self, pii: PiiCodec) -> None:
        self.pii = pii
        self._by_id: dict[str, tuple[str, str | None, str | None, str | None]] = {}

    def of(self, request_id: str, address: str, notes: str | None) -> tuple[str | None, str | None]:
        hit = self._by_id.get(request_id)
        if hit is not None and hit[0] == address and hit[1] == notes:
            return hit[2], hit[3]
        sealed = self.pii.seal("address_line", address), self.pii.seal("notes", notes)
        if len(self._by_id) >= _SEALS_MAX:
            del self._by_id[next(iter(self._by_id))]
        self._by_id[request_id] = (address, notes, *sealed)
        return sealed

    def drop(self, request_id: str) -> None:
        self._by_id.pop(request_id, None)


def _sealed_holder(
    holder: dict[str, Any], req: MealRequest, sealed: tuple[str | None, str | None], pii: PiiCodec
) -> Any:
    """A copy of `holder` (event payload, reply) whose `request` view carries the sealed values."""
    view = holder["request"]
    if view.get("addressLine") != req.address_line or view.get("notes") != req.notes:  # not this request's
        sealed = pii.seal("address_line", view.get("addressLine")), pii.seal("notes", view.get("notes"))
    return {**holder, "request": {**view, "addressLine": sealed[0], "notes": sealed[1]}}


class NegotiationStore:
    def __init__(self, pool: asyncpg.Pool, writer: Writer, fence: Fence | None = None, *, pii: PiiCodec) -> None:
        self.pool = pool
        self.writer = writer
        self.pii = pii
        self.fence = fence  # None on a single node: nothing to fence
        self._seals = _Seals(pii)

    def record(self, change: NegotiationChange, after: asyncio.Future[None] | None = None) -> asyncio.Future[None]:
        """Encode the change now and queue it for the next group commit."""
        req = change.request
        rows: list[tuple[Statement, tuple[Any, ...]]] = []
        if self.fence is not None:  # first: a node that does not serve this shard writes nothing
            rows.extend(self.fence.rows(MEAL_REQUEST_KIND, req.id))
        sealed = self._seals.of(req.id, req.address_line, req.notes)
        if req.status != OPEN:
            self._seals.drop(req.id)  # its last write, or nearly
        rows.append((UPSERT_REQUEST, _request_row(req, change.offer_count, *sealed)))
        rows.extend((UPSERT_OFFER, _offer_row(o)) for o in change.offers)
        if change.order is not None:
            rows.append((INSERT_ORDER, _order_row(change.order)))
        plain: list[str] = []  # plaintext: what the publisher sends
        for e in change.events:
            text = RawJson(orjson.dumps(e.payload).decode())
            plain.append(text)
            if "request" in e.payload:
                text = RawJson(orjson.dumps(_sealed_holder(e.payload, req, sealed, self.pii)).decode())
            rows.append((INSERT_EVENT, _event_row(req.id, e, text)))
        change.payload_json = plain
        if change.reply is not None:
            user_id, client_msg_id, reply = change.reply
            if isinstance(reply, dict) and "request" in reply:
                reply = _sealed_holder(reply, req, sealed, self.pii)
            rows.append((INSERT_REPLY, (f"meal_request:{req.id}", user_id, client_msg_id, reply)))
        rows.extend(notification_rows(change))  # notifications (issue 10): same transaction
        commit = self.writer.submit(rows, after=after)
        if self.fence is not None:
            self.fence.watch(commit)
        return commit

    async def load(self, request_id: str, reply_limit: int) -> Loaded | None:
        try:
            rid = uuid.UUID(request_id)
        except ValueError:
            return None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_REQUEST_BY_ID, rid)
            if row is None:
                return None
            offer_rows = await conn.fetch(_OFFERS_OF_REQUEST, rid)
            reply_rows = await conn.fetch(_RECENT_REPLIES, f"meal_request:{request_id}", reply_limit)
        req = request_from_row(self.pii.open_request(row), {str(o["id"]): offer_from_row(o) for o in offer_rows})
        recent = {(str(r["user_id"]), r["client_msg_id"]): self.pii.open_view(r["reply"]) for r in reversed(reply_rows)}
        return Loaded(req, recent)

    async def events_since(self, request_id: str, since_seq: int, limit: int) -> list[dict[str, Any]]:
        """Stored events after `since_seq`, oldest first (what a reconnecting watcher missed),
        payloads opened."""
        rows = await self.pool.fetch(_EVENTS_SINCE, uuid.UUID(request_id), since_seq, limit)
        out = [dict(r) for r in rows]
        for r in out:
            self.pii.open_view(r["payload"])
        return out

    async def due_for_expiry(self, limit: int = 500) -> list[str]:
        """Open requests whose deadline passed (the sweeper hands them to their actors)."""
        return [str(r["id"]) for r in await self.pool.fetch(_DUE_FOR_EXPIRY, limit)]


# ---------------------------------------------------------------- committed-state reads


async def open_requests_by_ids(pool: asyncpg.Pool, pii: PiiCodec, ids: list[str]) -> list[dict[str, Any]]:
    """The still open (not yet expired) requests among `ids`, in the order of `ids`."""
    by_id = {str(r["id"]): r for r in await pool.fetch(_OPEN_BY_IDS, ids)}
    return [pii.open_request(by_id[i]) for i in ids if i in by_id]


async def count_open_requests(pool: asyncpg.Pool, customer_id: str, excluding_request_id: str) -> int:
    """How many open, unexpired requests the customer has besides `excluding_request_id`."""
    count: int = await pool.fetchval(_COUNT_OPEN, uuid.UUID(customer_id), uuid.UUID(excluding_request_id))
    return count


async def live_offers_of_vendor(pool: asyncpg.Pool, vendor_id: str, limit: int = 1000) -> list[tuple[str, str]]:
    """(offer id, request id) of a vendor's PENDING or COUNTERED offers on OPEN requests."""
    rows = await pool.fetch(
        """SELECT o.id::text AS offer_id, o.request_id::text AS request_id
             FROM offers o JOIN meal_requests r ON r.id = o.request_id
            WHERE o.vendor_id = $1::uuid AND o.status IN ('PENDING', 'COUNTERED') AND r.status = 'OPEN'
            LIMIT $2""",
        vendor_id,
        limit,
    )
    return [(r["offer_id"], r["request_id"]) for r in rows]


async def request_id_of_offer(pool: asyncpg.Pool, offer_id: str) -> str | None:
    """The request an offer belongs to; None for an unknown offer or an id that is not a uuid."""
    try:
        oid = uuid.UUID(offer_id)
    except ValueError:
        return None
    request_id = await pool.fetchval(_REQUEST_OF_OFFER, oid)
    return None if request_id is None else str(request_id)


async def list_requests(
    pool: asyncpg.Pool,
    pii: PiiCodec,
    *,
    customer_id: str | None,
    statuses: tuple[str, ...],
    limit: int,
    before: Any = None,
) -> list[dict[str, Any]]:
    """Stored requests (REQUEST_COLUMNS), newest first; `customer_id` None lists everyone's (ops)."""
    args: list[Any] = [list(statuses), limit]
    if customer_id is not None:
        args.append(uuid.UUID(customer_id))
    if before is not None:
        args.append(before)
    rows = await pool.fetch(_LIST[customer_id is not None, before is not None], *args)
    return [pii.open_request(r) for r in rows]


async def request_with_offers(
    pool: asyncpg.Pool, pii: PiiCodec, request_id: str
) -> tuple[dict[str, Any], list[asyncpg.Record]] | None:
    """A stored request and its offers (oldest first); None when unknown or not a uuid."""
    try:
        rid = uuid.UUID(request_id)
    except ValueError:
        return None
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_REQUEST_BY_ID, rid)
        if row is None:
            return None
        offer_rows: list[asyncpg.Record] = await conn.fetch(_OFFERS_OF_REQUEST, rid)
    return pii.open_request(row), offer_rows
