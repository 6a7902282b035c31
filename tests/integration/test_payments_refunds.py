"""Refunds and split payments against the local providers: full and partial refunds by an
admin, over-refunds refused, the refund webhook completing (or failing) a pending refund; a
vendor's settlement account validated and turned into subaccounts, and initialise passing the
split with the platform's commission."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.e2e.util import Party
from tests.fakes.flutterwave import FakeFlutterwave
from tests.fakes.paystack import FakePaystack
from tests.helpers import Client
from tests.integration.payments_support import (
    audit_trail,
    flutterwave_webhook,
    init,
    js,
    ordered,
    payment_row,
    payment_status_is,
    paystack_webhook,
)


async def paid(pc: Client, paystack: FakePaystack, db: asyncpg.Connection) -> tuple[Party, str, Any]:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    paystack.settle(ref)
    assert (await paystack_webhook(pc, paystack.charge_event(ref)))[0] == 200
    await payment_status_is(db, ref, "SUCCESS")
    return cust, ref, (await payment_row(db, ref))["id"]


async def refund(pc: Client, payment_id: Any, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    headers = kw.get("headers", pc.admin_headers())
    return await pc.call("POST", f"/admin/payments/{payment_id}/refund", body, headers=headers, token=kw.get("token"))


async def test_partial_then_full_refund_never_more_than_paid(
    pc: Client, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    cust, ref, pid = await paid(pc, paystack, db)
    # Who may: admins only; what: a reason is required.
    assert (await refund(pc, pid, {"reason": "x"}, headers={}, token=cust.token))[0] == 403
    assert (await refund(pc, pid, {"reason": "x"}, headers={}))[0] == 401
    assert (await refund(pc, pid, {"amountKobo": 100}, headers=pc.admin_headers()))[0] == 400
    assert (await refund(pc, uuid.uuid4(), {"reason": "x"}))[0] == 404

    status, body = await refund(pc, pid, {"amountKobo": 100_000, "reason": "one dish missing"})
    assert status == 200, body
    assert body["refund"]["status"] == "PENDING" and body["refund"]["amountKobo"] == 100_000
    assert body["payment"]["status"] == "REFUND_PENDING" and body["payment"]["refundPendingKobo"] == 100_000
    assert paystack.calls("POST", "/refund")[-1] == {
        "transaction": ref,
        "amount": 100_000,
        "merchant_note": "one dish missing",
    }
    # More than is left (300,000 paid, 100,000 pending) is refused and changes nothing.
    status, err = await refund(pc, pid, {"amountKobo": 200_001, "reason": "too much"})
    assert status == 400 and err["error"]["details"]["amountKobo"].startswith("must be at most 200000")
    assert len(paystack.calls("POST", "/refund")) == 1

    assert (await paystack_webhook(pc, paystack.refund_event(ref, 100_000)))[0] == 200
    await payment_status_is(db, ref, "PARTIALLY_REFUNDED")
    row = await payment_row(db, ref)
    assert (row["refunded_kobo"], row["refund_pending_kobo"]) == (100_000, 0)
    assert await db.fetchval("SELECT status FROM refunds WHERE payment_id = $1", pid) == "PROCESSED"

    # The rest, without an amount: everything still refundable.
    status, body = await refund(pc, pid, {"reason": "order cancelled by ops"})
    assert status == 200 and body["refund"]["amountKobo"] == 200_000
    assert (await paystack_webhook(pc, paystack.refund_event(ref, 200_000)))[0] == 200
    await payment_status_is(db, ref, "REFUNDED")
    notes = await cust.nth("order:status", 5)  # confirmed, then each refund step
    assert [e["order"]["paymentStatus"] for e in notes] == [
        "PAID",
        "REFUND_PENDING",
        "PARTIALLY_REFUNDED",
        "REFUND_PENDING",
        "REFUNDED",
    ]
    assert {e["order"]["status"] for e in notes} == {"CONFIRMED"}
    status, err = await refund(pc, pid, {"amountKobo": 1, "reason": "again"})
    assert status == 409 and err["error"]["code"] == "conflict"

    status, body = await pc.call("GET", f"/admin/payments/{pid}", headers=pc.admin_headers())
    assert status == 200 and body["payment"]["refundedKobo"] == 300_000
    assert [r["status"] for r in body["payment"]["refunds"]] == ["PROCESSED", "PROCESSED"]
    assert await audit_trail(db, pid) == [
        (None, "INITIATED"),
        ("INITIATED", "SUCCESS"),
        ("SUCCESS", "REFUND_PENDING"),
        ("REFUND_PENDING", "PARTIALLY_REFUNDED"),
        ("PARTIALLY_REFUNDED", "REFUND_PENDING"),
        ("REFUND_PENDING", "REFUNDED"),
    ]
    admin_rows = await db.fetch(
        "SELECT actor_kind FROM audit_log WHERE target_id = $1 AND details->>'source' = 'refund'", str(pid)
    )
    assert [r["actor_kind"] for r in admin_rows] == ["admin_key", "admin_key"]


async def test_failed_refund_gives_the_amount_back(pc: Client, paystack: FakePaystack, db: asyncpg.Connection) -> None:
    _, ref, pid = await paid(pc, paystack, db)
    assert (await refund(pc, pid, {"reason": "customer asked"}))[0] == 200
    assert (await paystack_webhook(pc, paystack.refund_event(ref, 300_000, status="failed")))[0] == 200
    await payment_status_is(db, ref, "SUCCESS")
    row = await payment_row(db, ref)
    assert (row["refunded_kobo"], row["refund_pending_kobo"]) == (0, 0)
    assert await db.fetchval("SELECT status FROM refunds WHERE payment_id = $1", pid) == "FAILED"
    # Pending / processing notices change nothing.
    assert (await paystack_webhook(pc, paystack.refund_event(ref, 300_000, status="pending")))[0] == 200


async def test_refund_before_any_money_is_a_conflict(pc: Client, db: asyncpg.Connection) -> None:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"]))["reference"]
    pid = (await payment_row(db, ref))["id"]
    status, err = await refund(pc, pid, {"reason": "nothing paid"})
    assert status == 409 and err["error"]["code"] == "conflict"
    assert await db.fetchval("SELECT count(*) FROM refunds") == 0


async def test_flutterwave_refund_in_naira_completed_by_webhook(
    pc: Client, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    cust, _, order = await ordered(pc, db)
    ref = (await init(pc, cust, order["id"], "FLUTTERWAVE"))["reference"]
    tx = flutterwave.settle(ref)
    assert (await flutterwave_webhook(pc, flutterwave.charge_event(ref)))[0] == 200
    await payment_status_is(db, ref, "SUCCESS")
    pid = (await payment_row(db, ref))["id"]
    status, body = await refund(pc, pid, {"amountKobo": 50_050, "reason": "late delivery"})
    assert status == 200, body
    assert flutterwave.calls("POST", f"/v3/transactions/{tx['id']}/refund") == [
        {"amount": 500.5, "comments": "late delivery"}
    ]
    # The refund notice names the refunded transaction by Flutterwave's id only.
    done = {"event": "refund.completed", "data": {"id": 75923, "tx_id": tx["id"]}}
    done["data"] |= {"amount_refunded": 500.5, "status": "completed"}
    assert (await flutterwave_webhook(pc, done))[0] == 200
    await payment_status_is(db, ref, "PARTIALLY_REFUNDED")
    assert (await payment_row(db, ref))["refunded_kobo"] == 50_050


async def test_settlement_account_and_split_initialisation(
    pc: Client, paystack: FakePaystack, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    cust, vend, order = await ordered(pc, db)
    path = f"/api/v1/vendors/{vend.vendor_id}/settlement"
    # Both providers resolve the account with their own test banks; the resolver is Paystack.
    flutterwave.accounts[("058", "0123456789")] = "ADA OBI FOODS"
    bad = await pc.call("PUT", path, {"bankCode": "058", "accountNumber": "0000000000"}, token=vend.token)
    assert bad[0] == 400 and "accountNumber" in bad[1]["error"]["details"]
    malformed = await pc.call("PUT", path, {"bankCode": "05", "accountNumber": "12"}, token=vend.token)
    assert malformed[0] == 400
    assert (await pc.call("PUT", path, {"bankCode": "058", "accountNumber": "0123456789"}, token=cust.token))[0] == 403
    status, body = await pc.call("PUT", path, {"bankCode": "058", "accountNumber": "0123456789"}, token=vend.token)
    assert status == 200, body
    assert body["accountName"] == "ADA OBI FOODS" and body["commissionBps"] == 1000
    assert body["paystackSubaccount"] in paystack.subaccounts
    assert body["flutterwaveSubaccount"] in flutterwave.subaccounts
    assert paystack.subaccounts[body["paystackSubaccount"]]["percentage_charge"] == 10
    assert flutterwave.subaccounts[body["flutterwaveSubaccount"]]["split_value"] == 0.1
    assert flutterwave.calls("POST", "/v3/subaccounts")[-1]["business_mobile"] == vend.user["phone"]

    # Initialise passes the subaccount and our 10% commission, and the payment keeps the split.
    answer = await init(pc, cust, order["id"])
    sent = paystack.calls("POST", "/transaction/initialize")[-1]
    assert (sent["subaccount"], sent["transaction_charge"]) == (body["paystackSubaccount"], 30_000)
    row = await payment_row(db, answer["reference"])
    assert (row["subaccount"], row["commission_kobo"], row["commission_bps"]) == (
        body["paystackSubaccount"],
        30_000,
        1000,
    )
    fw = await init(pc, cust, order["id"], "FLUTTERWAVE")
    assert flutterwave.checkouts[fw["reference"]]["subaccounts"] == [
        {"id": body["flutterwaveSubaccount"], "transaction_charge_type": "flat", "transaction_charge": 300.0}
    ]
    stored = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'vendor.settlement'")
    assert js(stored["details"]) == {"bankCode": "058", "accountLast4": "6789"}
