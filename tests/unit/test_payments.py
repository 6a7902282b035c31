"""Pure payment rules (engine.payments), webhook signatures and readings (adapters.webhooks):
every verified outcome against every payment and order state, naira to kobo through Decimal,
refunds bounded by what was paid, and property tests that failures never undo a success and
that no sequence of outcomes and refunds refunds more than was paid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import webhooks as wh
from engine import order_rules as rules
from engine import orders as o
from engine import payments as pay
from engine.errors import DomainError
from engine.state import evolve
from tests.unit.order_support import at, new_order, paid

VECTORS = json.loads((Path(__file__).parent.parent / "fixtures" / "webhook-vectors.json").read_text())
P = pay.Payment(
    id="p1", order_id="o1", provider="PAYSTACK", reference="pocho-abc", amount_kobo=300_000, status=pay.INITIATED
)
OK = pay.Verified(pay.V_SUCCESS, reference="pocho-abc", amount_kobo=300_000, currency="NGN", tx_id="42")


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("naira", "kobo"),
    [
        (7500, 750_000),
        ("7500", 750_000),
        (7500.1, 750_010),
        ("7500.10", 750_010),
        ("0.01", 1),
        (2999.99, 299_999),
        ("1e3", 100_000),
        (0.005, 1),
        ("3000.50", 300_050),
    ],
)
def test_naira_to_kobo_is_exact(naira: object, kobo: int) -> None:
    assert pay.naira_to_kobo(naira) == kobo


@pytest.mark.parametrize("bad", [None, True, "abc", "-1", "NaN", "Infinity", [], {}])
def test_naira_to_kobo_refuses_what_is_not_an_amount(bad: object) -> None:
    with pytest.raises(ValueError):
        pay.naira_to_kobo(bad)


@given(st.integers(0, 10**11))
def test_kobo_round_trips_through_naira(kobo: int) -> None:
    """Up to a billion naira, also through the float a JSON number becomes."""
    assert pay.naira_to_kobo(pay.kobo_to_naira(kobo)) == kobo
    assert pay.naira_to_kobo(float(pay.kobo_to_naira(kobo))) == kobo


def test_commission_rounds_down() -> None:
    assert pay.commission_kobo(300_000, 1000) == 30_000
    assert pay.commission_kobo(999, 1000) == 99
    assert pay.commission_kobo(300_000, 0) == 0


# ---------------------------------------------------------------- verified outcomes


def test_success_for_an_unpaid_order_confirms_it() -> None:
    d = pay.apply_verified(P, OK, pay.ORDER_PENDING)
    assert d.effects == (pay.CONFIRM_ORDER,)
    assert (d.payment.status, d.payment.paid_status, d.payment.paid_kobo, d.payment.provider_tx_id) == (
        pay.SUCCESS,
        pay.SUCCESS,
        300_000,
        "42",
    )


def test_overpayment_is_accepted_and_the_paid_amount_kept() -> None:
    d = pay.apply_verified(P, evolve(OK, amount_kobo=300_001), pay.ORDER_PENDING)
    assert d.payment.status == pay.SUCCESS and d.payment.paid_kobo == 300_001


@pytest.mark.parametrize(
    ("verified", "reason"),
    [
        (evolve(OK, amount_kobo=299_999), pay.R_AMOUNT),
        (evolve(OK, amount_kobo=None), pay.R_AMOUNT),
        (evolve(OK, currency="USD"), pay.R_CURRENCY),
        (evolve(OK, currency=None), pay.R_CURRENCY),
        (evolve(OK, reference="someone-else"), pay.R_REFERENCE),
    ],
)
def test_mismatches_go_to_review_and_leave_the_order(verified: pay.Verified, reason: str) -> None:
    d = pay.apply_verified(P, verified, pay.ORDER_PENDING)
    assert d.effects == (pay.OPS_REVIEW,)
    assert (d.payment.status, d.payment.review_reason) == (pay.REVIEW, reason)


def test_success_for_a_cancelled_order_is_refunded() -> None:
    d = pay.apply_verified(P, OK, pay.ORDER_CANCELED)
    assert d.effects == (pay.AUTO_REFUND,) and d.payment.status == pay.PAID_AFTER_CANCEL


def test_success_for_an_order_paid_by_another_payment_is_reviewed() -> None:
    d = pay.apply_verified(P, OK, "CONFIRMED")
    assert d.effects == (pay.OPS_REVIEW,) and d.payment.review_reason == pay.R_ALREADY_PAID


def test_failure_pending_and_unknown() -> None:
    failed = pay.apply_verified(P, pay.Verified(pay.V_FAILED, tx_id="9"), pay.ORDER_PENDING)
    assert failed.payment.status == pay.FAILED and failed.effects == ()
    assert pay.apply_verified(failed.payment, pay.Verified(pay.V_FAILED), pay.ORDER_PENDING).payment is failed.payment
    for outcome in (pay.V_PENDING, pay.V_NOT_FOUND):
        assert pay.apply_verified(P, pay.Verified(outcome), pay.ORDER_PENDING).payment is P
    # A failed attempt then a success on the same reference: paid.
    assert pay.apply_verified(failed.payment, OK, pay.ORDER_PENDING).payment.status == pay.SUCCESS


def test_confirm_refused() -> None:
    paid = pay.apply_verified(P, OK, pay.ORDER_PENDING).payment
    cancelled = pay.confirm_refused(paid, pay.ORDER_CANCELED)
    assert cancelled.payment.status == pay.PAID_AFTER_CANCEL and cancelled.effects == (pay.AUTO_REFUND,)
    other = pay.confirm_refused(paid, "PREPARING")
    assert other.payment.status == pay.REVIEW and other.effects == (pay.OPS_REVIEW,)
    assert pay.confirm_refused(P, pay.ORDER_CANCELED).payment is P


# ---------------------------------------------------------------- refunds


def test_refund_rules() -> None:
    paid = pay.apply_verified(P, OK, pay.ORDER_PENDING).payment
    with pytest.raises(DomainError) as nothing:
        pay.request_refund(P, None)
    assert nothing.value.code == "conflict"
    part, amount = pay.request_refund(paid, 100_000)
    assert (part.status, part.refund_pending_kobo, amount) == (pay.REFUND_PENDING, 100_000, 100_000)
    with pytest.raises(DomainError) as over:
        pay.request_refund(part, 200_001)
    assert over.value.code == "invalid" and "200000" in str(over.value.details)
    for bad in (0, -5):
        with pytest.raises(DomainError):
            pay.request_refund(part, bad)
    done = pay.refund_settled(part, 100_000, processed=True)
    assert (done.status, done.refunded_kobo, pay.refundable_kobo(done)) == (pay.PARTIALLY_REFUNDED, 100_000, 200_000)
    rest, amount = pay.request_refund(done, None)
    assert amount == 200_000
    assert pay.refund_settled(rest, 200_000, processed=True).status == pay.REFUNDED
    assert pay.refund_settled(rest, 200_000, processed=False).status == pay.PARTIALLY_REFUNDED
    back = pay.refund_settled(pay.request_refund(paid, None)[0], 300_000, processed=False)
    assert (back.status, pay.refundable_kobo(back)) == (pay.SUCCESS, 300_000)


outcomes = st.sampled_from([pay.V_SUCCESS, pay.V_FAILED, pay.V_PENDING, pay.V_NOT_FOUND])
amounts = st.sampled_from([299_999, 300_000, 300_001, None])
currencies = st.sampled_from(["NGN", "NGN", "USD"])
orders = st.sampled_from([pay.ORDER_PENDING, pay.ORDER_CANCELED, "CONFIRMED", "DELIVERED"])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("verified"), outcomes, amounts, currencies, orders),
        st.tuples(st.just("refund"), st.integers(1, 400_000) | st.none()),
        st.tuples(st.just("settle"), st.integers(1, 400_000), st.booleans()),
        st.tuples(st.just("refused"), orders),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_failures_never_undo_success_and_refunds_stay_within_what_was_paid(script: list[tuple[object, ...]]) -> None:
    p = P
    paid_status: str | None = None
    for step in script:
        if step[0] == "verified":
            _, outcome, amount, currency, order = step
            v = pay.Verified(str(outcome), "pocho-abc", amount, str(currency), "42")  # type: ignore[arg-type]
            before = p
            p = pay.apply_verified(p, v, str(order)).payment
            if before.paid_status is not None:
                assert p is before  # only forward: a paid payment ignores every later outcome
        elif step[0] == "refund":
            try:
                p, _ = pay.request_refund(p, step[1])  # type: ignore[arg-type]
            except DomainError:
                pass
        elif step[0] == "settle":
            amount = min(int(step[1]), p.refund_pending_kobo)  # type: ignore[call-overload]
            if amount:
                p = pay.refund_settled(p, amount, bool(step[2]))
        else:
            p = pay.confirm_refused(p, str(step[1])).payment
        if paid_status is not None:
            # Money arrived: never unpaid again, and its outcome changes only by confirm_refused
            assert p.status not in pay.UNPAID and p.paid_status in pay.PAID_OUTCOMES
        if p.paid_status is not None:
            paid_status = p.paid_status
            assert p.paid_kobo is not None
            assert 0 <= p.refunded_kobo + p.refund_pending_kobo <= p.paid_kobo
        else:
            assert p.refunded_kobo == p.refund_pending_kobo == 0


# ---------------------------------------------------------------- webhooks


def test_paystack_signature_vectors() -> None:
    v = VECTORS["paystack"]
    raw = v["raw_body"].encode()
    assert wh.paystack_signed(raw, {"x-paystack-signature": v["x-paystack-signature"]}, v["key"])
    pretty = json.dumps(json.loads(v["raw_body"])).encode()
    assert not wh.paystack_signed(pretty, {"x-paystack-signature": v["x-paystack-signature"]}, v["key"])
    assert wh.paystack_signed(pretty, {"x-paystack-signature": v["sig_of_pretty_reserialised_body"]}, v["key"])
    assert not wh.paystack_signed(raw, {}, v["key"])
    assert not wh.paystack_signed(raw, {"x-paystack-signature": v["x-paystack-signature"]}, "")


def test_flutterwave_signature_vectors() -> None:
    v3, v4 = VECTORS["flutterwave_v3"], VECTORS["flutterwave_v4_hmac_unconfirmed"]
    raw, secret = v3["raw_body"].encode(), v3["secret_hash"]
    assert wh.flutterwave_signed(raw, {"verif-hash": v3["verif-hash"]}, secret, accept_v4=False)
    assert not wh.flutterwave_signed(raw, {"verif-hash": secret + "x"}, secret, accept_v4=True)
    assert wh.flutterwave_signed(raw, {"flutterwave-signature": v4["flutterwave-signature"]}, secret, accept_v4=True)
    assert not wh.flutterwave_signed(
        raw, {"flutterwave-signature": v4["flutterwave-signature"]}, secret, accept_v4=False
    )
    assert not wh.flutterwave_signed(raw + b" ", {"flutterwave-signature": v4["flutterwave-signature"]}, secret, True)
    assert not wh.flutterwave_signed(raw, {"verif-hash": ""}, "", accept_v4=True)


def test_deliveries_read_and_redacted() -> None:
    ps = wh.paystack_delivery(json.loads(VECTORS["paystack"]["raw_body"]))
    assert (ps.kind, ps.tx_id, ps.reference, ps.event_type) == (
        wh.CHARGE,
        "4099260516",
        "ord_01HZX3K9Q2",
        "charge.success",
    )
    fw = wh.flutterwave_delivery(json.loads(VECTORS["flutterwave_v3"]["raw_body"]))
    assert (fw.kind, fw.tx_id, fw.reference) == (wh.CHARGE, "285959875", "ord_01HZX3K9Q2")
    refund = wh.paystack_delivery(
        {
            "event": "refund.processed",
            "data": {"transaction_reference": "r1", "amount": "5000", "refund_reference": "RF1", "status": "processed"},
        }
    )
    assert (refund.kind, refund.refund_kobo, refund.refund_status, refund.tx_id) == (
        wh.REFUND,
        5000,
        "processed",
        "RF1",
    )
    redacted = wh.redact(json.loads(VECTORS["flutterwave_v3"]["raw_body"]))
    assert redacted["data"]["card"] == redacted["data"]["customer"] == redacted["data"]["ip"] == wh.REDACTED
    assert redacted["data"]["amount"] == 7500 and redacted["data"]["tx_ref"] == "ord_01HZX3K9Q2"
    for bad in ([], {"event": "x"}, {"data": {}}, {"event": "charge.success", "data": {}}):
        with pytest.raises(wh.BadDelivery):
            wh.paystack_delivery(bad)


# ---------------------------------------------------------------- the order hears about its money


def test_order_note_payment_changes_only_payment_status() -> None:
    order = paid(new_order())
    new, events = rules.note_payment(order, o.PaymentNoted(payment_status="REFUND_PENDING", now=at(5), reference="r1"))
    assert (new.status, new.payment_status, new.seq) == (order.status, "REFUND_PENDING", order.seq + 1)
    body = events[0].payload["event"]
    assert (body["kind"], body["by"], body["paymentStatus"], body["reference"]) == (
        "payment",
        "payment",
        "REFUND_PENDING",
        "r1",
    )
    assert "previousStatus" not in body and events[0].targets == (o.CUSTOMER, o.VENDOR)
    same, none = rules.note_payment(new, o.PaymentNoted(payment_status="REFUND_PENDING", now=at(6)))
    assert same is new and none == []
    with pytest.raises(DomainError) as bad:
        rules.note_payment(new, o.PaymentNoted(payment_status="FREE", now=at(6)))
    assert bad.value.code == "invalid"
