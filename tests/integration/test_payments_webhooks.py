"""Webhook routes over real HTTP: the shared vectors (raw bytes verify; the same JSON
re-serialised with other spacing does not), forged and missing signatures (401, nothing
stored, counted), the size bound, unreadable bodies, and what a verified delivery may do:
amount and currency mismatches go to review, the webhook body's own claims are never trusted,
failures never undo a success, deliveries before the payment is known wait in the inbox, a
success for a cancelled order becomes PAID_AFTER_CANCEL and is refunded."""

from __future__ import annotations

import json
import uuid

import aiohttp
import asyncpg

from tests.conftest import Server, StartServer
from tests.fakes.flutterwave import FakeFlutterwave
from tests.fakes.paystack import FakePaystack
from tests.helpers import Client, eventually
from tests.integration.payments_support import (
    FLW_HASH,
    VECTORS,
    audit_trail,
    flutterwave_webhook,
    flw_v4_headers,
    init,
    js,
    order_status,
    ordered,
    payment_row,
    payment_status_is,
    paystack_headers,
    paystack_webhook,
    post_raw,
    provider_settings,
    sample,
)


def rejected(provider: str) -> float:
    return sample("pocho_payment_webhooks_total", {"provider": provider, "outcome": "bad_signature"})


async def test_paystack_vector_verifies_on_raw_bytes_only(pc: Client, db: asyncpg.Connection) -> None:
    v = VECTORS["paystack"]
    raw = v["raw_body"].encode()
    pretty = json.dumps(json.loads(v["raw_body"])).encode()  # same JSON, other spacing
    assert pretty != raw
    before = rejected("PAYSTACK")
    for body, sig in ((pretty, v["x-paystack-signature"]), (raw, v["sig_of_pretty_reserialised_body"])):
        status, err, _ = await post_raw(pc, "/webhooks/paystack", body, {"x-paystack-signature": sig})
        assert status == 401 and err["error"]["code"] == "unauthorized"
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0
    assert rejected("PAYSTACK") == before + 2

    status, body, _ = await post_raw(pc, "/webhooks/paystack", raw, {"x-paystack-signature": v["x-paystack-signature"]})
    assert status == 200 and body == {"received": True, "duplicate": False}
    row = await db.fetchrow("SELECT * FROM webhook_events")
    assert (row["provider"], row["tx_id"], row["event_type"], row["reference"]) == (
        "PAYSTACK",
        "4099260516",
        "charge.success",
        "ord_01HZX3K9Q2",
    )
    payload = js(row["payload"])["data"]
    assert payload["customer"] == payload["authorization"] == payload["ip_address"] == "[redacted]"
    assert payload["amount"] == 750_000 and payload["metadata"]["order_id"] == "01HZX3K9Q2"
    # Not one of our references (yet): kept in the inbox for the reconcile job.
    await eventually(
        lambda: _outcome(db, row["id"], "unknown_reference"), what="the delivery waits as an unknown reference"
    )
    assert await db.fetchval("SELECT processed_at FROM webhook_events WHERE id = $1", row["id"]) is None


async def _outcome(db: asyncpg.Connection, event_id: int, outcome: str) -> bool:
    return bool(await db.fetchval("SELECT outcome FROM webhook_events WHERE id = $1", event_id) == outcome)


async def test_flutterwave_vectors_v3_hash_and_v4_signature(
    start_server: StartServer, pc: Client, paystack: FakePaystack, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    v3, v4 = VECTORS["flutterwave_v3"], VECTORS["flutterwave_v4_hmac_unconfirmed"]
    raw = v3["raw_body"].encode()
    assert flw_v4_headers(raw)["flutterwave-signature"] == v4["flutterwave-signature"]
    before = rejected("FLUTTERWAVE")
    for headers in (
        {"verif-hash": "wrong-hash"},
        {},
        {"flutterwave-signature": "AAAA" + v4["flutterwave-signature"][4:]},
    ):
        status, _, _ = await post_raw(pc, "/webhooks/flutterwave", raw, headers)
        assert status == 401
    assert rejected("FLUTTERWAVE") == before + 3
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0

    status, body, _ = await post_raw(pc, "/webhooks/flutterwave", raw, {"verif-hash": v3["verif-hash"]})
    assert status == 200 and body["duplicate"] is False
    # The v4 signature of the same delivery is accepted (configured) and is the same event: a duplicate.
    status, body, _ = await post_raw(
        pc, "/webhooks/flutterwave", raw, {"flutterwave-signature": v4["flutterwave-signature"]}
    )
    assert status == 200 and body["duplicate"] is True
    row = await db.fetchrow("SELECT * FROM webhook_events")
    assert (row["tx_id"], row["event_type"], row["reference"]) == ("285959875", "charge.completed", "ord_01HZX3K9Q2")
    assert js(row["payload"])["data"]["card"] == "[redacted]"

    # Where v4 is not enabled, its signature alone is refused.
    strict = await start_server(**provider_settings(paystack, flutterwave, flutterwave_signature_v4=False))
    async with aiohttp.ClientSession(base_url=strict.url) as s:
        c = Client(s, strict)
        status, _, _ = await post_raw(
            c, "/webhooks/flutterwave", raw, {"flutterwave-signature": v4["flutterwave-signature"]}
        )
        assert status == 401


async def test_size_bound_and_unreadable_bodies(pc: Client, db: asyncpg.Connection) -> None:
    big = b'{"event":"charge.success","data":{"pad":"' + b"x" * 70_000 + b'"}}'
    status, err, _ = await post_raw(pc, "/webhooks/paystack", big, paystack_headers(big))
    assert status == 413 and err["error"]["code"] == "payload_too_large"
    nul = b'{"event":"charge.success","data":{"reference":"r\\u0000x"}}'  # jsonb refuses NUL: invalid, not 500
    deep = b'{"event":"charge.success","data":' + b'{"a":' * 200 + b"1" + b"}" * 201
    for raw in (b"not json", b"[]", b'{"event":"charge.success"}', b'{"data":{}}', nul, deep):
        status, err, _ = await post_raw(pc, "/webhooks/paystack", raw, paystack_headers(raw))
        assert status == 400 and err["error"]["code"] == "invalid", raw
    status, _, _ = await post_raw(pc, "/webhooks/flutterwave", b"{", {"verif-hash": FLW_HASH})
    assert status == 400
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0


async def test_verified_amount_and_currency_decide_not_the_webhook(
    pc: Client, paystack: FakePaystack, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    reviews = sample("pocho_payment_reviews_total", {"reason": "amount_short"})
    # Paystack: the body claims the full amount; the verify API says less.
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    paystack.settle(ref, amount=299_999)
    event = paystack.charge_event(ref, amount=300_000)
    assert (await paystack_webhook(pc, event))[0] == 200
    await payment_status_is(db, ref, "REVIEW")
    row = await payment_row(db, ref)
    assert (row["review_reason"], row["paid_kobo"]) == ("amount_short", 299_999)
    assert (await order_status(pc, cust, order["id"]))["status"] == "PENDING_PAYMENT"
    ops = await db.fetchrow("SELECT * FROM order_ops_events WHERE order_id = $1", uuid.UUID(order["id"]))
    assert ops["kind"] == "payment_review" and js(ops["details"])["reason"] == "amount_short"
    assert sample("pocho_payment_reviews_total", {"reason": "amount_short"}) == reviews + 1

    # Flutterwave: naira decimals are converted exactly; one kobo short is short.
    cust2, _, order2 = await ordered(pc, db)
    ref2 = (await init(pc, cust2, order2["id"], "FLUTTERWAVE"))["reference"]
    flutterwave.settle(ref2, amount=2999.99)
    assert (await flutterwave_webhook(pc, flutterwave.charge_event(ref2, amount=3000)))[0] == 200
    await payment_status_is(db, ref2, "REVIEW")
    assert (await payment_row(db, ref2))["paid_kobo"] == 299_999

    # Currency: USD of the same number is not naira.
    cust3, _, order3 = await ordered(pc, db)
    ref3 = (await init(pc, cust3, order3["id"]))["reference"]
    paystack.settle(ref3, currency="USD")
    assert (await paystack_webhook(pc, paystack.charge_event(ref3)))[0] == 200
    await payment_status_is(db, ref3, "REVIEW")
    assert (await payment_row(db, ref3))["review_reason"] == "currency_mismatch"
    assert (await order_status(pc, cust3, order3["id"]))["status"] == "PENDING_PAYMENT"

    # A webhook claiming success that the provider does not confirm changes nothing but FAILED.
    cust4, _, order4 = await ordered(pc, db)
    ref4 = (await init(pc, cust4, order4["id"]))["reference"]
    paystack.settle(ref4, status="failed")
    assert (await paystack_webhook(pc, paystack.charge_event(ref4, status="success")))[0] == 200
    await payment_status_is(db, ref4, "FAILED")
    assert (await order_status(pc, cust4, order4["id"]))["status"] == "PENDING_PAYMENT"


async def test_out_of_order_failure_never_undoes_success(
    pc: Client, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    # A failed attempt first (the customer retries on the same checkout), then the success.
    paystack.settle(ref, status="failed")
    assert (await paystack_webhook(pc, paystack.charge_event(ref, event="charge.failed")))[0] == 200
    await payment_status_is(db, ref, "FAILED")
    paystack.settle(ref)
    seen = cust.next("order:status")
    assert (await paystack_webhook(pc, paystack.charge_event(ref)))[0] == 200
    assert (await seen)["order"]["status"] == "CONFIRMED"
    await payment_status_is(db, ref, "SUCCESS")
    # A late failure for the same transaction (another event type: recorded) undoes nothing.
    paystack.settle(ref, status="failed")
    late = paystack.charge_event(ref, event="charge.dispute.create")
    late["event"] = "charge.failed_late"
    assert (await paystack_webhook(pc, late))[0] == 200
    ev_id = await db.fetchval("SELECT id FROM webhook_events WHERE event_type = 'charge.failed_late'")
    await eventually(lambda: _outcome(db, ev_id, "no_change"), what="the late failure applied as no change")
    row = await payment_row(db, ref)
    assert row["status"] == "SUCCESS" and row["paid_status"] == "SUCCESS"
    order_now = await order_status(pc, cust, order["id"])
    assert order_now["status"] == "CONFIRMED" and order_now["seq"] == 1


async def test_delivery_before_the_payment_is_known_is_reconciled(
    pc: Client, pay_server: Server, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    paystack.settle(ref)
    # The delivery arrives while our payment row does not carry this reference yet (as if the
    # provider called back before our write landed): simulated by renaming ours for a moment.
    await db.execute("UPDATE payments SET reference = 'elsewhere-1' WHERE reference = $1", ref)
    assert (await paystack_webhook(pc, paystack.charge_event(ref)))[0] == 200
    ev_id = await db.fetchval("SELECT id FROM webhook_events WHERE reference = $1", ref)
    await eventually(lambda: _outcome(db, ev_id, "unknown_reference"), what="kept in the inbox")
    assert (await order_status(pc, cust, order["id"]))["status"] == "PENDING_PAYMENT"
    await db.execute("UPDATE payments SET reference = $1 WHERE reference = 'elsewhere-1'", ref)
    seen = cust.next("order:status")
    await pay_server.svc.payments.reconcile()  # one round of the periodic job
    assert (await seen)["order"]["status"] == "CONFIRMED"
    assert await db.fetchval("SELECT outcome FROM webhook_events WHERE id = $1", ev_id) == "success"
    assert await db.fetchval("SELECT attempts FROM webhook_events WHERE id = $1", ev_id) == 2


async def test_success_after_cancel_is_refunded(pc: Client, paystack: FakePaystack, db: asyncpg.Connection) -> None:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    await cust.ok("order:cancel", {"orderId": order["id"], "reason": "changed my mind"})
    paystack.settle(ref)
    assert (await paystack_webhook(pc, paystack.charge_event(ref)))[0] == 200
    await payment_status_is(db, ref, "REFUND_PENDING")
    row = await payment_row(db, ref)
    assert row["paid_status"] == "PAID_AFTER_CANCEL" and row["refund_pending_kobo"] == 300_000
    # The refund is recorded pending first, then asked of the provider (after that commit).
    await eventually(lambda: bool(paystack.calls("POST", "/refund")), what="the automatic refund call")
    refund_calls = paystack.calls("POST", "/refund")
    assert refund_calls == [
        {"transaction": ref, "amount": 300_000, "merchant_note": "order cancelled before the payment arrived"}
    ]
    refund = await db.fetchrow("SELECT * FROM refunds WHERE payment_id = $1", row["id"])
    assert refund["automatic"] and refund["status"] == "PENDING"
    assert (await order_status(pc, cust, order["id"]))["status"] == "CANCELED"
    # The refund webhook completes it; the order hears of each step (order:status kind payment).
    assert (await paystack_webhook(pc, paystack.refund_event(ref, 300_000)))[0] == 200
    await payment_status_is(db, ref, "REFUNDED")
    notes = await cust.nth("order:status", 4)
    assert [(e["event"]["kind"], e["order"]["paymentStatus"]) for e in notes] == [
        ("status", "PENDING"),
        ("payment", "PAID_AFTER_CANCEL"),
        ("payment", "REFUND_PENDING"),
        ("payment", "REFUNDED"),
    ]
    assert all(e["order"]["status"] == "CANCELED" for e in notes)
    assert (await order_status(pc, cust, order["id"]))["paymentStatus"] == "REFUNDED"
    assert await audit_trail(db, row["id"]) == [
        (None, "INITIATED"),
        ("INITIATED", "PAID_AFTER_CANCEL"),
        ("PAID_AFTER_CANCEL", "REFUND_PENDING"),
        ("REFUND_PENDING", "REFUNDED"),
    ]


async def test_order_cancelled_between_read_and_confirm(
    pc: Client, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    """The stored order still says PENDING_PAYMENT when the payment is applied, but its actor has
    moved on (cancelled): the actor refuses, the payment becomes PAID_AFTER_CANCEL and is refunded."""
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    await cust.ok("order:cancel", {"orderId": order["id"], "reason": "too slow"})
    await db.execute("UPDATE orders SET status = 'PENDING_PAYMENT' WHERE id = $1", uuid.UUID(order["id"]))
    paystack.settle(ref)
    assert (await paystack_webhook(pc, paystack.charge_event(ref)))[0] == 200
    await payment_status_is(db, ref, "REFUND_PENDING")
    row = await payment_row(db, ref)
    assert row["paid_status"] == "PAID_AFTER_CANCEL"
    assert await audit_trail(db, row["id"]) == [
        (None, "INITIATED"),
        ("INITIATED", "SUCCESS"),
        ("SUCCESS", "PAID_AFTER_CANCEL"),
        ("PAID_AFTER_CANCEL", "REFUND_PENDING"),
    ]
    # Recorded pending first, then asked of the provider: exactly once.
    await eventually(lambda: bool(paystack.calls("POST", "/refund")), what="the automatic refund call")
    assert len(paystack.calls("POST", "/refund")) == 1


async def test_reconcile_confirms_a_paid_order_whose_confirmation_did_not_land(
    pc: Client, pay_server: Server, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    # As after a crash between the payment's commit and the order actor's turn.
    await db.execute(
        "UPDATE payments SET status = 'SUCCESS', paid_status = 'SUCCESS', paid_kobo = 300000 WHERE reference = $1", ref
    )
    seen = cust.next("order:status")
    await pay_server.svc.payments.reconcile()
    event = await seen
    assert event["order"]["status"] == "CONFIRMED" and event["event"]["reference"] == ref
    # A second round changes nothing: the order was confirmed by this very payment.
    await pay_server.svc.payments.reconcile()
    assert (await payment_row(db, ref))["status"] == "SUCCESS"
    assert (await order_status(pc, cust, order["id"]))["seq"] == 1
