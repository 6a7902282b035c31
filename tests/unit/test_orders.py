"""The order state machine: every role x status x target, the delivery code, cancellation
side effects, ratings and the views each party gets."""

from __future__ import annotations

from copy import deepcopy
from datetime import timedelta

import pytest

from engine import order_rules as rules
from engine import orders as o
from engine.assignment import AssignmentWithdrawn, Carrying, Release, RiderCandidate
from engine.errors import DomainError
from engine.limits import MAX_CODE_ATTEMPTS
from engine.orders import Order
from tests.unit.order_support import (
    CODE,
    CUSTOMER,
    ORDER_FIELDS,
    RIDER,
    VENDOR,
    assigned,
    at,
    at_status,
    new_order,
    offered,
    paid,
    status_events,
    tells,
    vendor,
)

# ---------------------------------------------------------------- the matrix

ROLES = ("payment", "customer", "vendor", "rider", "other_customer", "other_vendor", "other_rider")
# What each role's command can name: the payment confirms; the customer only cancels;
# vendor and rider send a status, so any status is a (possibly invalid) target.
TARGETS = {
    "payment": (o.CONFIRMED,),
    "customer": (o.CANCELED,),
    "vendor": o.STATUSES,
    "rider": o.STATUSES,
}
ALLOWED = {
    ("payment", o.PENDING_PAYMENT, o.CONFIRMED),
    ("customer", o.PENDING_PAYMENT, o.CANCELED),
    ("customer", o.CONFIRMED, o.CANCELED),
    ("vendor", o.CONFIRMED, o.PREPARING),
    ("vendor", o.PREPARING, o.READY),
    *(("vendor", s, o.CANCELED) for s in o.BEFORE_PICKUP),
    ("rider", o.READY, o.PICKED_UP),
    ("rider", o.PICKED_UP, o.OUT_FOR_DELIVERY),
    ("rider", o.OUT_FOR_DELIVERY, o.DELIVERED),
}
# (status, rider assigned?) of the orders each command is tried on.
STARTS = [
    (o.PENDING_PAYMENT, False),
    *((s, r) for s in (o.CONFIRMED, o.PREPARING, o.READY) for r in (False, True)),
    (o.PICKED_UP, True),
    (o.OUT_FOR_DELIVERY, True),
    (o.DELIVERED, True),
    (o.CANCELED, False),
]


def _cases() -> list[tuple[str, str, bool, str]]:
    out = []
    for role in ROLES:
        base = role.removeprefix("other_")
        for status, has_rider in STARTS:
            for target in TARGETS[base]:
                out.append((role, status, has_rider, target))
    return out


def move(order: Order, role: str, target: str) -> tuple[Order, list[o.Event]]:
    """The command `role` would send to move `order` to `target`; strangers use other ids."""
    base = role.removeprefix("other_")
    stranger = role.startswith("other_")
    now = order.updated_at + timedelta(minutes=1)
    if base == "payment":
        return rules.confirm_payment(order, o.PaymentConfirmed(delivery_code=CODE, now=now))
    if base == "customer":
        who = "cust-2" if stranger else CUSTOMER
        return rules.cancel_by_customer(order, o.CustomerCancel(customer_id=who, reason="no longer hungry", now=now))
    if base == "vendor":
        cmd = o.VendorUpdate(vendor_id="vend-2" if stranger else VENDOR, status=target, reason="sold out", now=now)
        return rules.vendor_update(order, cmd)
    code = CODE if target == o.DELIVERED else None
    cmd_r = o.RiderUpdate(rider_id="rider-2" if stranger else RIDER, status=target, delivery_code=code, now=now)
    return rules.rider_update(order, cmd_r)


def expected(role: str, status: str, has_rider: bool, target: str) -> str:
    base = role.removeprefix("other_")
    if (base == "vendor" and target not in o.VENDOR_TARGETS) or (base == "rider" and target not in o.RIDER_TARGETS):
        return "invalid"
    if role.startswith("other_") or (base == "rider" and not has_rider):
        return "forbidden"
    return "ok" if (base, status, target) in ALLOWED else "conflict"


@pytest.mark.parametrize(("role", "status", "has_rider", "target"), _cases())
def test_every_role_status_and_target(role: str, status: str, has_rider: bool, target: str) -> None:
    order = at_status(status, with_rider=has_rider)
    before = deepcopy(order)
    outcome = expected(role, status, has_rider, target)
    if outcome != "ok":
        with pytest.raises(DomainError) as err:
            move(order, role, target)
        assert err.value.code == outcome
        assert not isinstance(err.value, rules.CodeRejected)
        assert order == before  # refused: nothing changed
        return
    new, events = move(order, role, target)
    assert new.status == target and new.seq == order.seq + 1
    [event] = status_events(events)
    assert event.seq == new.seq and event.payload["event"]["status"] == target
    assert event.payload["event"]["previousStatus"] == status
    assert event.payload["order"] == o.order_view(new) and "deliveryCode" not in event.payload["order"]
    audiences = {o.CUSTOMER, o.VENDOR} | ({o.RIDER} if new.rider_id else set())
    assert set(event.targets) == audiences
    assert order == before  # the input is never changed


def test_there_are_cases_for_every_status_and_role() -> None:
    cases = _cases()
    assert {c[1] for c in cases} == set(o.STATUSES)
    assert {c[0] for c in cases} == set(ROLES)
    assert {expected(*c) for c in cases} == {"ok", "conflict", "forbidden", "invalid"}


# ---------------------------------------------------------------- payment


def test_payment_confirms_sets_the_code_and_starts_dispatch() -> None:
    new, events = rules.confirm_payment(
        new_order(), o.PaymentConfirmed(delivery_code=CODE, now=at(3), reference="ps_1")
    )
    assert new.status == o.CONFIRMED and new.payment_status == o.PAID and new.delivery_code == CODE
    assert new.confirmed_at == at(3) and new.eta_minutes == 20  # the promised prep minutes
    assert new.dispatch.retry_at == at(3)  # search at once
    body = events[0].payload["event"]
    assert body["by"] == "payment" and body["reference"] == "ps_1"


@pytest.mark.parametrize("code", ["12345", "1234567", "12a456", "", "١٢٣٤٥٦"])
def test_payment_needs_a_six_digit_code(code: str) -> None:
    with pytest.raises(DomainError) as err:
        rules.confirm_payment(new_order(), o.PaymentConfirmed(delivery_code=code, now=at(1)))
    assert err.value.code == "invalid" and err.value.details == {"deliveryCode": "must be 6 digits"}


# ---------------------------------------------------------------- views


def test_only_the_customer_view_has_the_code() -> None:
    order = at_status(o.READY)
    assert set(o.order_view(order)) == ORDER_FIELDS
    mine = o.customer_view(order)
    assert set(mine) == ORDER_FIELDS | {"deliveryCode"} and mine["deliveryCode"] == CODE
    assert o.customer_view(new_order())["deliveryCode"] is None
    assert o.with_code(o.order_view(new_order()), CODE)["deliveryCode"] is None  # unpaid: nothing to show


# ---------------------------------------------------------------- delivery code


def _deliver(order: Order, code: str | None) -> tuple[Order, list[o.Event]]:
    cmd = o.RiderUpdate(rider_id=RIDER, status=o.DELIVERED, delivery_code=code, now=at(60))
    return rules.rider_update(order, cmd)


def test_delivered_needs_the_code() -> None:
    order = at_status(o.OUT_FOR_DELIVERY)
    with pytest.raises(DomainError) as err:
        _deliver(order, None)
    assert err.value.code == "invalid" and "deliveryCode" in (err.value.details or {})
    new, events = _deliver(order, CODE)
    assert new.status == o.DELIVERED and new.eta_minutes is None
    assert tells(events) == [(RIDER, Release(order.id))]


def test_wrong_codes_count_and_lock_after_five() -> None:
    order = at_status(o.OUT_FOR_DELIVERY)
    for attempt in range(1, MAX_CODE_ATTEMPTS + 1):
        with pytest.raises(rules.CodeRejected) as err:
            _deliver(order, "000000")
        assert err.value.code == "forbidden"
        assert err.value.order.code_attempts == attempt and err.value.order.status == o.OUT_FOR_DELIVERY
        assert err.value.order.seq == order.seq  # not an order event
        ops = err.value.events
        if attempt < MAX_CODE_ATTEMPTS:
            assert ops == [] and f"{MAX_CODE_ATTEMPTS - attempt} attempt" in err.value.message
        else:
            assert [e.payload["kind"] for e in ops] == [o.CODE_LOCKED] and "locked" in err.value.message
        order = err.value.order
    assert rules.code_locked(order)
    with pytest.raises(DomainError) as locked:
        _deliver(order, CODE)  # even the right code
    assert locked.value.code == "forbidden" and "locked" in locked.value.message
    assert not isinstance(locked.value, rules.CodeRejected)  # nothing more is counted


def test_the_code_is_checked_only_when_delivering_from_out_for_delivery() -> None:
    order = at_status(o.PICKED_UP)
    with pytest.raises(DomainError) as err:
        _deliver(order, "000000")
    assert err.value.code == "conflict" and not isinstance(err.value, rules.CodeRejected)


# ---------------------------------------------------------------- cancellation side effects


def test_cancel_withdraws_an_open_offer() -> None:
    order = offered(paid(new_order()))
    cmd = o.CustomerCancel(customer_id=CUSTOMER, reason="too slow", now=at(2))
    new, events = rules.cancel_by_customer(order, cmd)
    assert new.status == o.CANCELED and new.dispatch.offered_rider_id is None and new.dispatch.retry_at is None
    revoked = [e for e in events if e.kind == o.ASSIGNMENT_REVOKED]
    assert [e.targets for e in revoked] == [(f"rider:{RIDER}",)]
    assert tells(events) == [(RIDER, AssignmentWithdrawn(order.id))]
    assert status_events(events)[0].payload["event"]["reason"] == "too slow"


def test_vendor_cancel_frees_the_assigned_rider_and_tells_it() -> None:
    order = at_status(o.READY)
    cmd = o.VendorUpdate(vendor_id=VENDOR, status=o.CANCELED, reason="gas ran out", now=at(30))
    new, events = rules.vendor_update(order, cmd)
    [status] = status_events(events)
    assert o.RIDER in status.targets  # the rider hears it too
    assert tells(events) == [(RIDER, Release(order.id))]
    assert new.rider_id == RIDER  # history: who was assigned


def test_vendor_cancel_needs_a_reason() -> None:
    with pytest.raises(DomainError) as err:
        vendor(paid(new_order()), o.CANCELED)
    assert err.value.code == "invalid" and "reason" in (err.value.details or {})


def test_vendor_eta_with_preparing_is_the_view_eta_and_bounded() -> None:
    order = vendor(paid(new_order()), o.PREPARING, eta_minutes=12)
    assert order.eta_minutes == 12
    with pytest.raises(DomainError) as err:
        vendor(paid(new_order()), o.PREPARING, eta_minutes=0)
    assert err.value.code == "invalid"


def test_customer_cancel_reason_is_checked() -> None:
    for reason in ("", "   ", "x" * 281, "a\x00b"):
        with pytest.raises(DomainError) as err:
            rules.cancel_by_customer(new_order(), o.CustomerCancel(customer_id=CUSTOMER, reason=reason, now=at(1)))
        assert err.value.code == "invalid"


# ---------------------------------------------------------------- assignment


def test_only_the_offered_rider_accepts_and_only_in_time() -> None:
    order = offered(paid(new_order()))
    expires = order.dispatch.offer_expires_at
    assert expires is not None
    for rider_id, when in (("rider-2", expires - timedelta(seconds=1)), (RIDER, expires)):
        with pytest.raises(DomainError) as err:
            rules.accept_assignment(order, o.AcceptAssignment(rider_id=rider_id, rider_user_id="u", now=when))
        assert err.value.code == "conflict"
    new, events = rules.accept_assignment(
        order, o.AcceptAssignment(rider_id=RIDER, rider_user_id="u", now=expires - timedelta(seconds=1))
    )
    assert new.rider_id == RIDER and new.dispatch.offered_rider_id is None and new.dispatch.retry_at is None
    [event] = status_events(events)
    assert event.payload["event"]["kind"] == "rider_assigned" and o.RIDER in event.targets
    assert tells(events) == [(RIDER, Carrying(order.id, order.delivery_lat, order.delivery_lng))]
    # Accepting again as the assigned rider is a retry: no change; another rider: taken.
    again, none = rules.accept_assignment(new, o.AcceptAssignment(rider_id=RIDER, rider_user_id="u", now=at(5)))
    assert again is new and none == []
    with pytest.raises(DomainError) as taken:
        rules.accept_assignment(new, o.AcceptAssignment(rider_id="rider-2", rider_user_id="u", now=at(5)))
    assert taken.value.code == "conflict"


def test_accept_after_the_offer_was_revoked_is_a_conflict() -> None:
    order = offered(paid(new_order()))
    declined, _ = rules.decline_assignment(order, o.DeclineAssignment(rider_id=RIDER, now=at(1)))
    with pytest.raises(DomainError) as err:
        rules.accept_assignment(declined, o.AcceptAssignment(rider_id=RIDER, rider_user_id="u", now=at(1)))
    assert err.value.code == "conflict"


def test_decline_skips_the_rider_and_searches_again() -> None:
    order = offered(paid(new_order()))
    new, events = rules.decline_assignment(order, o.DeclineAssignment(rider_id=RIDER, now=at(2)))
    assert new.dispatch.skipped == (RIDER,) and new.dispatch.retry_at == at(2) and new.seq == order.seq
    assert tells(events) == [(RIDER, AssignmentWithdrawn(order.id))]
    with pytest.raises(DomainError) as err:
        rules.decline_assignment(new, o.DeclineAssignment(rider_id=RIDER, now=at(2)))
    assert err.value.code == "conflict"


def test_rider_unavailable_moves_on_only_for_the_offered_rider() -> None:
    order = offered(paid(new_order()))
    same, none = rules.rider_unavailable(order, "rider-9", at(2))
    assert same is order and none == []
    new, events = rules.rider_unavailable(order, RIDER, at(2))
    assert new.dispatch.skipped == (RIDER,) and [e.kind for e in events] == [o.ASSIGNMENT_REVOKED, o.TELL]


def test_offer_payload_is_protocols() -> None:
    order = offered(paid(new_order()))
    events = rules.offer_next(paid(new_order()), [RiderCandidate(RIDER, 1.0)], at(1), o.Policy())[1]
    offer = events[0]
    assert offer.kind == o.ASSIGNMENT_OFFER and offer.targets == (f"rider:{RIDER}",)
    p = offer.payload
    assert set(p) == {"orderId", "pickup", "dropoff", "distanceKm", "feeKobo", "expiresAt"}
    assert p["pickup"] == {"lat": order.pickup_lat, "lng": order.pickup_lng, "name": "Mama Put"}
    assert p["dropoff"] == {"lat": order.delivery_lat, "lng": order.delivery_lng}
    assert 1.5 < p["distanceKm"] < 2.5 and p["feeKobo"] % 100 == 0 and p["expiresAt"].endswith("Z")


def test_offer_next_plans_a_retry_when_nobody_is_eligible() -> None:
    order = paid(new_order())
    new, events = rules.offer_next(order, [], at(1), o.Policy(dispatch_retry=timedelta(seconds=15)))
    assert events == [] and new.dispatch.retry_at == at(1) + timedelta(seconds=15)
    assert rules.offer_next(new, [RiderCandidate(RIDER, 1.0)], at(1), o.Policy())[0] is new  # not due yet


def test_no_dispatch_before_payment_or_after_assignment() -> None:
    for order in (new_order(), assigned(paid(new_order()))):
        assert rules.offer_next(order, [RiderCandidate("rider-5", 0.1)], at(50), o.Policy()) == (order, [])


# ---------------------------------------------------------------- rating


def _rate(order: Order, rating: object = 5, customer: str = CUSTOMER, comment: str | None = None) -> Order:
    cmd = o.Rate(customer_id=customer, rating=rating, comment=comment, now=at(90))  # type: ignore[arg-type]
    return rules.rate(order, cmd)[0]


def test_rating_once_per_delivered_order_by_its_customer() -> None:
    delivered = at_status(o.DELIVERED)
    rated = _rate(delivered, 4, comment="hot and fast")
    assert rated.rating == 4 and rated.seq == delivered.seq + 1
    for order, kw, code in (
        (at_status(o.OUT_FOR_DELIVERY), {}, "conflict"),
        (delivered, {"customer": "cust-2"}, "forbidden"),
        (rated, {}, "conflict"),
        (delivered, {"rating": 6}, "invalid"),
        (delivered, {"rating": True}, "invalid"),
        (delivered, {"comment": "x" * 1001}, "invalid"),
    ):
        with pytest.raises(DomainError) as err:
            _rate(order, **kw)  # type: ignore[arg-type]
        assert err.value.code == code


def test_rating_event_carries_what_the_review_stores() -> None:
    delivered = at_status(o.DELIVERED)
    _, events = rules.rate(delivered, o.Rate(customer_id=CUSTOMER, rating=3, comment="ok", now=at(90)))
    body = events[0].payload["event"]
    assert body["kind"] == "rated" and body["rating"] == 3 and body["comment"] == "ok"
    assert set(events[0].targets) == {o.CUSTOMER, o.VENDOR, o.RIDER}
