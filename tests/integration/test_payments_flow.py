"""Payments end to end against local Paystack and Flutterwave servers: initialise (stored first,
reused on repeat, who may), a verified webhook confirming the order through its actor (seen on
the customer's socket and over HTTP), duplicates, the audit trail."""

from __future__ import annotations

import uuid

import asyncpg

from tests.conftest import Server
from tests.e2e.util import customer
from tests.fakes.flutterwave import FakeFlutterwave
from tests.fakes.paystack import FakePaystack
from tests.helpers import Client
from tests.integration.payments_support import (
    audit_trail,
    flutterwave_webhook,
    init,
    js,
    order_status,
    ordered,
    payment_row,
    payment_status_is,
    paystack_webhook,
)


async def test_paystack_payment_confirms_the_order(
    pc: Client, pay_server: Server, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    cust, _, order = await ordered(pc, db)
    oid = order["id"]
    first = await init(pc, cust, oid)
    assert first["amountKobo"] == 300_000 and first["authorizationUrl"].startswith("https://checkout.paystack.com/")
    ref = first["reference"]
    assert all(ch.isalnum() or ch in "-.=" for ch in ref)
    sent = paystack.calls("POST", "/transaction/initialize")
    assert len(sent) == 1 and sent[0]["amount"] == 300_000 and sent[0]["reference"] == ref
    assert sent[0]["metadata"] == {"order_id": oid} and "@" in sent[0]["email"]
    row = await payment_row(db, ref)
    assert (row["status"], row["amount_kobo"], row["currency"]) == ("INITIATED", 300_000, "NGN")

    again = await init(pc, cust, oid)  # the live payment, not a second one
    assert again == first and len(paystack.calls("POST", "/transaction/initialize")) == 1
    assert await db.fetchval("SELECT count(*) FROM payments WHERE order_id = $1", uuid.UUID(oid)) == 1

    paystack.settle(ref)
    seen = cust.next("order:status")
    status, body = await paystack_webhook(pc, paystack.charge_event(ref))
    assert status == 200 and body == {"received": True, "duplicate": False}
    event = await seen
    assert event["order"]["status"] == "CONFIRMED" and event["event"]["by"] == "payment"
    assert event["event"]["reference"] == ref and event["order"]["paymentStatus"] == "PAID"
    assert (await order_status(pc, cust, oid))["status"] == "CONFIRMED"
    await payment_status_is(db, ref, "SUCCESS")
    assert paystack.calls("GET", f"/transaction/verify/{ref}")  # the webhook was only a trigger
    row = await payment_row(db, ref)
    assert row["paid_kobo"] == 300_000 and row["provider_tx_id"] == str(paystack.transactions[ref]["id"])
    assert await audit_trail(db, row["id"]) == [(None, "INITIATED"), ("INITIATED", "SUCCESS")]

    # The delivery is stored once, without card or customer details.
    stored = await db.fetchrow("SELECT * FROM webhook_events WHERE reference = $1", ref)
    assert stored["event_type"] == "charge.success" and stored["outcome"] == "success"
    assert js(stored["payload"])["data"]["customer"] == "[redacted]"
    assert js(stored["payload"])["data"]["authorization"] == "[redacted]"
    assert js(stored["payload"])["data"]["amount"] == 300_000

    # A duplicate is answered 200 and changes nothing.
    status, body = await paystack_webhook(pc, paystack.charge_event(ref))
    assert status == 200 and body == {"received": True, "duplicate": True}
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 1
    assert (await order_status(pc, cust, oid))["seq"] == 1

    # Paid: initialising again is a conflict.
    status, body = await pc.call(
        "POST", "/api/v1/payments/init", {"orderId": oid, "provider": "PAYSTACK"}, token=cust.token
    )
    assert status == 409 and body["error"]["code"] == "conflict"


async def test_flutterwave_payment_confirms_the_order(
    pc: Client, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    cust, _, order = await ordered(pc, db)
    profile = {"firstName": "Ada", "lastName": "Obi", "email": "ada.obi@example.org"}
    assert (await pc.call("PATCH", "/api/v1/me", profile, token=cust.token))[0] == 200
    answer = await init(pc, cust, order["id"], "FLUTTERWAVE")
    ref = answer["reference"]
    assert answer["authorizationUrl"].startswith("https://checkout.flutterwave.com/")
    checkout = flutterwave.checkouts[ref]
    assert checkout["amount"] == 3000.0 and checkout["currency"] == "NGN"  # naira
    assert checkout["meta"] == {"order_id": order["id"]}
    # Names and email are sealed at rest (docs/USERS.md): the provider gets them opened.
    assert (checkout["customer"]["email"], checkout["customer"]["name"]) == ("ada.obi@example.org", "Ada Obi")

    flutterwave.settle(ref, amount="3000.00")
    seen = cust.next("order:status")
    status, _ = await flutterwave_webhook(pc, flutterwave.charge_event(ref))
    assert status == 200
    assert (await seen)["order"]["status"] == "CONFIRMED"
    await payment_status_is(db, ref, "SUCCESS")
    tx_id = flutterwave.transactions[ref]["id"]
    assert flutterwave.calls("GET", f"/v3/transactions/{tx_id}/verify")
    stored = await db.fetchrow("SELECT * FROM webhook_events WHERE reference = $1", ref)
    assert stored["tx_id"] == str(tx_id) and js(stored["payload"])["data"]["card"] == "[redacted]"


async def test_who_may_initialise(pc: Client, db: asyncpg.Connection) -> None:
    cust, vend, order = await ordered(pc, db)
    other = await customer(pc)
    body = {"orderId": order["id"], "provider": "PAYSTACK"}
    assert (await pc.call("POST", "/api/v1/payments/init", body, token=other.token))[0] == 404
    assert (await pc.call("POST", "/api/v1/payments/init", body, token=vend.token))[0] == 403
    assert (await pc.call("POST", "/api/v1/payments/init", body))[0] == 401
    missing = {"orderId": str(uuid.uuid4()), "provider": "PAYSTACK"}
    assert (await pc.call("POST", "/api/v1/payments/init", missing, token=cust.token))[0] == 404
    status, err = await pc.call("POST", "/api/v1/payments/init", {**body, "provider": "STRIPE"}, token=cust.token)
    assert status == 400 and "provider" in err["error"]["details"]
    assert await db.fetchval("SELECT count(*) FROM payments") == 0


async def test_a_live_payment_that_never_got_its_checkout_is_retired(
    pc: Client, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    """The provider call (or our write after it) failed without an answer: the stored payment has
    no checkout URL. A later init retires it (FAILED, audited) instead of waiting forever."""
    cust, _, order = await ordered(pc, db)
    stuck = await db.fetchval(
        """INSERT INTO payments (order_id, customer_id, provider, reference, amount_kobo, status, created_at)
           VALUES ($1, $2, 'PAYSTACK', 'pocho-stuck', 300000, 'INITIATED', now() - interval '1 hour') RETURNING id""",
        uuid.UUID(order["id"]),
        uuid.UUID(cust.user["id"]),
    )
    answer = await init(pc, cust, order["id"])
    assert answer["reference"] != "pocho-stuck"
    assert await db.fetchval("SELECT status FROM payments WHERE id = $1", stuck) == "FAILED"
    assert await audit_trail(db, stuck) == [("INITIATED", "FAILED")]
