"""Storage of payments: payment rows, the webhook inbox, refunds, vendor settlement accounts,
and the ops record of a payment sent for review.

Style: SQL text constants (these statements lean on ON CONFLICT, FOR UPDATE, RETURNING and
partial unique indexes, which read more plainly as SQL than as pypika). Every change of a
payment's status is written with its audit row by the caller (pocho_rt.payment_service and
pocho_rt.refunds, through pocho_rt.payment_common.audit_status), in the transaction that
changes it. Reads return asyncpg Records; views are built at the edge.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import asyncpg
import orjson

from engine import payments as pay
from persistence.db import RawJson

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_PAYMENT_COLUMNS = """id, order_id, customer_id, provider, reference, amount_kobo, currency, status,
    authorization_url, provider_tx_id, paid_at, paid_status, paid_kobo, refunded_kobo, refund_pending_kobo,
    review_reason, subaccount, commission_kobo, commission_bps, verified_at, created_at, updated_at"""


def as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None


def payment_from_row(row: asyncpg.Record) -> pay.Payment:
    return pay.Payment(
        id=str(row["id"]),
        order_id=str(row["order_id"]),
        provider=row["provider"],
        reference=row["reference"],
        amount_kobo=row["amount_kobo"],
        status=row["status"],
        currency=row["currency"],
        paid_status=row["paid_status"],
        paid_kobo=row["paid_kobo"],
        refunded_kobo=row["refunded_kobo"],
        refund_pending_kobo=row["refund_pending_kobo"],
        review_reason=row["review_reason"],
        provider_tx_id=row["provider_tx_id"],
    )


# ---------------------------------------------------------------- orders as payments see them

_ORDER = """SELECT o.id, o.customer_id, o.vendor_id, o.amount_kobo, o.currency, o.status,
    u.email, u.first_name, u.last_name, v.display_name AS vendor_name
    FROM orders o JOIN users u ON u.id = o.customer_id JOIN vendors v ON v.id = o.vendor_id
    WHERE o.id = $1"""
_ORDER_STATUS = "SELECT status FROM orders WHERE id = $1"
_CONFIRMED_BY = """SELECT EXISTS (SELECT 1 FROM order_events WHERE order_id = $1
    AND payload->'event'->>'by' = 'payment' AND payload->'event'->>'reference' = $2)"""


async def order_for_payment(conn: Conn, order_id: str) -> asyncpg.Record | None:
    oid = as_uuid(order_id)
    return None if oid is None else await conn.fetchrow(_ORDER, oid)


async def order_status(conn: Conn, order_id: str) -> str | None:
    status: str | None = await conn.fetchval(_ORDER_STATUS, uuid.UUID(order_id))
    return status


async def order_confirmed_by(conn: Conn, order_id: str, reference: str) -> bool:
    """Did this payment's reference confirm the order (its `order:status` event says so)?"""
    return bool(await conn.fetchval(_CONFIRMED_BY, uuid.UUID(order_id), reference))


# ---------------------------------------------------------------- payments

_INSERT = f"""INSERT INTO payments (order_id, customer_id, provider, reference, amount_kobo, currency, status,
    subaccount, commission_kobo, commission_bps)
    VALUES ($1, $2, $3, $4, $5, 'NGN', 'INITIATED', $6, $7, $8)
    ON CONFLICT (order_id, provider) WHERE status = 'INITIATED' DO NOTHING
    RETURNING {_PAYMENT_COLUMNS}"""
_LIVE = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 AND provider = $2 AND status = 'INITIATED'"
_BY_REFERENCE = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE reference = $1"
_BY_ID = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE id = $1"
_BY_PROVIDER_TX = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE provider = $1 AND provider_tx_id = $2"
_SET_URL = "UPDATE payments SET authorization_url = $2, updated_at = now() WHERE id = $1"
_UPDATE = f"""UPDATE payments SET status = $2, paid_status = $3, paid_kobo = $4, refunded_kobo = $5,
    refund_pending_kobo = $6, review_reason = $7, provider_tx_id = $8,
    paid_at = CASE WHEN $3::text IS NOT NULL THEN coalesce(paid_at, now()) END,
    verified_at = CASE WHEN $3::text IS NOT NULL THEN coalesce(verified_at, now()) ELSE verified_at END,
    updated_at = now()
    WHERE id = $1 RETURNING {_PAYMENT_COLUMNS}"""
_INITIATED_OLDER = f"""SELECT {_PAYMENT_COLUMNS} FROM payments WHERE status = 'INITIATED'
    AND updated_at <= now() - make_interval(secs => $1) AND created_at > now() - interval '2 days'
    ORDER BY updated_at LIMIT $2"""
_TOUCH = "UPDATE payments SET updated_at = now() WHERE id = $1 AND status = 'INITIATED'"
_PAID_UNCONFIRMED = f"""SELECT {_PAYMENT_COLUMNS} FROM payments p WHERE p.status = 'SUCCESS'
    AND EXISTS (SELECT 1 FROM orders o WHERE o.id = p.order_id AND o.status = 'PENDING_PAYMENT')
    ORDER BY p.updated_at LIMIT $1"""
_REFUND_DUE = f"""SELECT {_PAYMENT_COLUMNS} FROM payments WHERE status = 'PAID_AFTER_CANCEL'
    AND refunded_kobo = 0 AND refund_pending_kobo = 0 ORDER BY updated_at LIMIT $1"""
_LIST_OF_ORDER = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 ORDER BY created_at"


async def insert_payment(
    conn: Conn,
    *,
    order_id: str,
    customer_id: str,
    provider: str,
    reference: str,
    amount_kobo: int,
    subaccount: str | None,
    commission_kobo: int | None,
    commission_bps: int | None,
) -> asyncpg.Record | None:
    """The new INITIATED payment, or None when the order already has a live one at this provider."""
    row: asyncpg.Record | None = await conn.fetchrow(
        _INSERT,
        uuid.UUID(order_id),
        uuid.UUID(customer_id),
        provider,
        reference,
        amount_kobo,
        subaccount,
        commission_kobo,
        commission_bps,
    )
    return row


async def live_payment(conn: Conn, order_id: str, provider: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_LIVE, uuid.UUID(order_id), provider)
    return row


async def set_authorization_url(conn: Conn, payment_id: str, url: str) -> None:
    await conn.execute(_SET_URL, uuid.UUID(payment_id), url)


async def by_reference(conn: Conn, reference: str, *, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_BY_REFERENCE + (" FOR UPDATE" if lock else ""), reference)
    return row


async def by_id(conn: Conn, payment_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    pid = as_uuid(payment_id)
    if pid is None:
        return None
    row: asyncpg.Record | None = await conn.fetchrow(_BY_ID + (" FOR UPDATE" if lock else ""), pid)
    return row


async def by_provider_tx(conn: Conn, provider: str, tx_id: str) -> asyncpg.Record | None:
    """The payment a provider's transaction id belongs to (known once verified)."""
    row: asyncpg.Record | None = await conn.fetchrow(_BY_PROVIDER_TX, provider, tx_id)
    return row


async def payments_of_order(conn: Conn, order_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_LIST_OF_ORDER, uuid.UUID(order_id))
    return rows


async def update_payment(conn: Conn, p: pay.Payment) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        _UPDATE,
        uuid.UUID(p.id),
        p.status,
        p.paid_status,
        p.paid_kobo,
        p.refunded_kobo,
        p.refund_pending_kobo,
        p.review_reason,
        p.provider_tx_id,
    )
    return row


async def initiated_older_than(conn: Conn, seconds: float, limit: int) -> list[pay.Payment]:
    return [payment_from_row(r) for r in await conn.fetch(_INITIATED_OLDER, seconds, limit)]


async def touch(conn: Conn, payment_id: str) -> None:
    """Re-verified and still INITIATED: to the back of the reconcile job's queue."""
    await conn.execute(_TOUCH, uuid.UUID(payment_id))


async def paid_unconfirmed(conn: Conn, limit: int) -> list[pay.Payment]:
    return [payment_from_row(r) for r in await conn.fetch(_PAID_UNCONFIRMED, limit)]


async def refund_due(conn: Conn, limit: int) -> list[pay.Payment]:
    return [payment_from_row(r) for r in await conn.fetch(_REFUND_DUE, limit)]


# ---------------------------------------------------------------- the webhook inbox

_INSERT_EVENT = """INSERT INTO webhook_events (provider, event_id, tx_id, event_type, reference, payload)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (provider, tx_id, event_type) DO NOTHING RETURNING id"""
_EVENT = """SELECT id, provider, event_id, tx_id, event_type, reference, payload, received_at, processed_at,
    outcome, attempts FROM webhook_events WHERE id = $1"""
_PENDING_EVENTS = """SELECT id FROM webhook_events WHERE processed_at IS NULL
    AND received_at > now() - make_interval(secs => $2) ORDER BY received_at LIMIT $1"""
_PROCESSED = "UPDATE webhook_events SET processed_at = now(), outcome = $2, attempts = attempts + 1 WHERE id = $1"
_ATTEMPT = "UPDATE webhook_events SET attempts = attempts + 1, last_error = $2, outcome = $3 WHERE id = $1"
_INBOX_SIZE = "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"


async def insert_event(
    conn: Conn, provider: str, event_id: str, tx_id: str, event_type: str, reference: str | None, payload: Any
) -> int | None:
    """The new inbox row's id, or None for a delivery already recorded (same provider,
    transaction and event type)."""
    new_id: int | None = await conn.fetchval(
        _INSERT_EVENT, provider, event_id, tx_id, event_type, reference, RawJson(orjson.dumps(payload).decode())
    )
    return new_id


async def event(conn: Conn, event_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_EVENT + (" FOR UPDATE" if lock else ""), event_id)
    return row


async def pending_events(conn: Conn, limit: int, max_age_seconds: float) -> list[int]:
    return [r["id"] for r in await conn.fetch(_PENDING_EVENTS, limit, max_age_seconds)]


async def event_processed(conn: Conn, event_id: int, outcome: str) -> None:
    await conn.execute(_PROCESSED, event_id, outcome)


async def event_attempted(conn: Conn, event_id: int, error: str, outcome: str) -> None:
    """Kept in the inbox (unknown reference, provider away): the reconcile job retries it."""
    await conn.execute(_ATTEMPT, event_id, error[:500], outcome)


async def inbox_size(conn: Conn) -> int:
    n: int = await conn.fetchval(_INBOX_SIZE)
    return n


# ---------------------------------------------------------------- refunds

_REFUND_COLUMNS = """id, payment_id, amount_kobo, reason, status, provider_refund_id, requested_by, automatic,
    created_at, updated_at"""
_INSERT_REFUND = f"""INSERT INTO refunds (payment_id, amount_kobo, reason, requested_by, automatic)
    VALUES ($1, $2, $3, $4, $5) RETURNING {_REFUND_COLUMNS}"""
_SET_REFUND_ID = "UPDATE refunds SET provider_refund_id = $2, updated_at = now() WHERE id = $1"
_PENDING_REFUND = f"""SELECT {_REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 AND status = 'PENDING'
    ORDER BY (amount_kobo = $2) DESC, created_at LIMIT 1 FOR UPDATE"""
_SETTLE_REFUND = f"UPDATE refunds SET status = $2, updated_at = now() WHERE id = $1 RETURNING {_REFUND_COLUMNS}"
_REFUNDS_OF = f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 ORDER BY created_at"


async def insert_refund(
    conn: Conn, payment_id: str, amount_kobo: int, reason: str, requested_by: str | None, automatic: bool
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        _INSERT_REFUND,
        uuid.UUID(payment_id),
        amount_kobo,
        reason,
        None if requested_by is None else uuid.UUID(requested_by),
        automatic,
    )
    return row


async def set_provider_refund_id(conn: Conn, refund_id: str, provider_refund_id: str | None) -> None:
    await conn.execute(_SET_REFUND_ID, uuid.UUID(refund_id), provider_refund_id)


async def pending_refund(conn: Conn, payment_id: str, amount_kobo: int) -> asyncpg.Record | None:
    """The pending refund a refund webhook completes: one of this amount first, else the oldest."""
    row: asyncpg.Record | None = await conn.fetchrow(_PENDING_REFUND, uuid.UUID(payment_id), amount_kobo)
    return row


async def settle_refund(conn: Conn, refund_id: str, status: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(_SETTLE_REFUND, uuid.UUID(refund_id), status)
    return row


async def refunds_of(conn: Conn, payment_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(_REFUNDS_OF, uuid.UUID(payment_id))
    return rows


# ---------------------------------------------------------------- vendor settlement accounts

_SETTLEMENT_COLUMNS = """vendor_id, bank_code, account_number, account_name, paystack_subaccount,
    flutterwave_subaccount, created_at, updated_at"""
_UPSERT_SETTLEMENT = f"""INSERT INTO vendor_settlements (vendor_id, bank_code, account_number, account_name,
    paystack_subaccount, flutterwave_subaccount) VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (vendor_id) DO UPDATE SET bank_code = EXCLUDED.bank_code, account_number = EXCLUDED.account_number,
    account_name = EXCLUDED.account_name, paystack_subaccount = EXCLUDED.paystack_subaccount,
    flutterwave_subaccount = EXCLUDED.flutterwave_subaccount, updated_at = now()
    RETURNING {_SETTLEMENT_COLUMNS}"""
_SETTLEMENT = f"SELECT {_SETTLEMENT_COLUMNS} FROM vendor_settlements WHERE vendor_id = $1"
_VENDOR_OWNER = """SELECT v.user_id, v.display_name, u.phone FROM vendors v JOIN users u ON u.id = v.user_id
    WHERE v.id = $1"""


async def vendor_owner(conn: Conn, vendor_id: str) -> asyncpg.Record | None:
    vid = as_uuid(vendor_id)
    return None if vid is None else await conn.fetchrow(_VENDOR_OWNER, vid)


async def upsert_settlement(
    conn: Conn,
    vendor_id: str,
    bank_code: str,
    account_number: str,
    account_name: str,
    paystack_subaccount: str | None,
    flutterwave_subaccount: str | None,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        _UPSERT_SETTLEMENT,
        uuid.UUID(vendor_id),
        bank_code,
        account_number,
        account_name,
        paystack_subaccount,
        flutterwave_subaccount,
    )
    return row


async def settlement_of(conn: Conn, vendor_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_SETTLEMENT, uuid.UUID(vendor_id))
    return row


# ---------------------------------------------------------------- ops

_INSERT_OPS = "INSERT INTO order_ops_events (order_id, kind, details) VALUES ($1, $2, $3)"
_INSERT_NOTIFICATION = """INSERT INTO notifications_outbox (user_id, channel, kind, recipient, body)
    VALUES (NULL, 'push', $1, 'ops', $2)"""


async def ops_record(conn: Conn, order_id: str, kind: str, details: dict[str, Any], body: str) -> None:
    """An ops record of the order (GET /admin/orders/sla?kind=...) and its notification to ops."""
    await conn.execute(_INSERT_OPS, uuid.UUID(order_id), kind, RawJson(orjson.dumps(details).decode()))
    await conn.execute(_INSERT_NOTIFICATION, kind, body)
