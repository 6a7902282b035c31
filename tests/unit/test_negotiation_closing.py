"""Negotiation rules, continued: counters, accept, reject, cancel, expiry, whole runs."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import datetime, timedelta
from typing import Any

import pytest

from engine import geometry, limits
from engine import negotiation as n
from engine import negotiation_views as views
from engine.negotiation import (
    AcceptCounter,
    CancelRequest,
    CounterOffer,
    DomainError,
    Event,
    MealRequest,
    RejectOffer,
    ReviseOffer,
    WithdrawOffer,
)
from tests.unit.negotiation_support import (
    CUSTOMER,
    LATER,
    T0,
    accept,
    assert_refused,
    check_seqs,
    create_cmd,
    flags,
    new_request,
    offer_of,
    place,
    place_all,
)

# ---------------------------------------------------------------- counter_offer and accept_counter


def counter(
    req: MealRequest,
    price: Any,
    offer: str = "off-v1-0",
    customer: str = CUSTOMER,
    at: datetime = T0,
    message: str | None = None,
) -> tuple[MealRequest, list[Event]]:
    return n.counter_offer(
        req, CounterOffer(customer_id=customer, offer_id=offer, price_kobo=price, now=at, message=message)
    )


def test_counter_offer_happy_path() -> None:
    req, _ = place(new_request(), "v1", 450_000)
    req, events = counter(req, 350_000, at=LATER, message="can you do 3.5k?")
    o = offer_of(req, "v1")
    assert (o.status, o.counter_price_kobo, o.round, o.price_kobo, o.updated_at) == (
        "COUNTERED",
        350_000,
        1,
        450_000,
        LATER,
    )
    [e] = events
    assert e.kind == "offer:countered"
    assert e.targets == (("vendor:v1", "offer:countered"), ("room", "offer:updated"))
    assert e.payload == {"offer": views.offer_view(o), "message": "can you do 3.5k?", "seq": 3}
    check_seqs(req, events, 3)


def test_counter_without_message_has_no_message_key() -> None:
    req, _ = place(new_request(), "v1", 450_000)
    _, [e] = counter(req, 350_000)
    assert set(e.payload) == {"offer", "seq"}


def test_counter_does_not_change_competitiveness() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, events = counter(req, 50, offer="off-b-1")
    assert len(events) == 1 and flags(req) == {"a": True, "b": False}


def test_counter_rounds_are_limited() -> None:
    req, _ = place(new_request(), "v1", 450_000)
    for i in range(limits.MAX_COUNTER_ROUNDS):
        req, _ = counter(req, 300_000 + i)
        req, _ = n.revise_offer(req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=400_000, now=T0))
    assert offer_of(req, "v1").round == 3
    assert_refused(req, lambda: counter(req, 300_000), "limit_reached")


def test_counter_refusals() -> None:
    req = place_all(new_request(), ("v1", 450_000), ("v2", 460_000))
    assert_refused(req, lambda: counter(req, 1, customer="someone-else"), "forbidden")
    assert_refused(req, lambda: counter(req, 1, offer="nope"), "not_found")
    assert_refused(req, lambda: counter(req, 1, at=req.expires_at), "expired")
    assert_refused(req, lambda: counter(req, 0), "invalid")
    assert_refused(req, lambda: counter(req, False), "invalid")
    assert_refused(req, lambda: counter(req, 1, message="m" * 501), "invalid")
    req, _ = counter(req, 400_000)
    err = assert_refused(req, lambda: counter(req, 390_000), "conflict")
    assert "waiting" in err.message
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="v2", offer_id="off-v2-1", now=T0))
    assert_refused(req, lambda: counter(req, 1, offer="off-v2-1"), "conflict")


def test_accept_counter_happy_path() -> None:
    req = place_all(new_request(), ("a", 550_000), ("b", 400_000))
    req, _ = counter(req, 300_000, offer="off-a-0")
    start = req.seq + 1
    req, events = n.accept_counter(req, AcceptCounter(vendor_id="a", offer_id="off-a-0", now=LATER))
    a = req.offers["off-a-0"]
    assert (a.status, a.price_kobo, a.counter_price_kobo, a.round, a.over_budget, a.is_competitive) == (
        "PENDING",
        300_000,
        300_000,
        1,
        False,
        True,
    )
    assert [(e.kind, e.payload["offer"]["vendorId"]) for e in events] == [
        ("offer:updated", "a"),
        ("offer:updated", "b"),
    ]
    assert events[0].targets == (("room", "offer:updated"),)
    assert req.offers["off-b-1"].is_competitive is False
    check_seqs(req, events, start)


def test_accept_counter_refusals() -> None:
    req, _ = place(new_request(), "v1", 450_000)

    def accept(vendor: str = "v1", offer: str = "off-v1-0", at: datetime = T0) -> tuple[MealRequest, list[Event]]:
        return n.accept_counter(req, AcceptCounter(vendor_id=vendor, offer_id=offer, now=at))

    assert_refused(req, accept, "conflict")  # nothing countered yet
    req, _ = counter(req, 400_000)
    assert_refused(req, lambda: accept(offer="nope"), "not_found")
    assert_refused(req, lambda: accept(vendor="v2"), "forbidden")
    assert_refused(req, lambda: accept(at=req.expires_at), "expired")
    req, _ = accept()
    assert_refused(req, accept, "conflict")


# ---------------------------------------------------------------- accept_offer


def test_accept_offer_happy_path() -> None:
    req = place_all(new_request(), ("a", 300_000), ("b", 350_000), ("c", 400_000))
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0))
    start = req.seq + 1
    req, events, order = accept(req, "off-b-1")
    assert req.status == "ACCEPTED" and req.accepted_offer_id == "off-b-1" and req.order_id == "ord-1"
    statuses = {o.vendor_id: o.status for o in req.offers.values()}
    assert statuses == {"a": "REJECTED", "b": "ACCEPTED", "c": "WITHDRAWN"}
    assert req.offers["off-a-0"].updated_at == LATER and req.offers["off-c-2"].updated_at == T0
    assert [e.kind for e in events] == ["offer:accepted", "offer:rejected", "request:closed"]
    check_seqs(req, events, start)
    acc, rej, closed = events
    assert acc.targets == (("vendor:b", "offer:accepted"), ("room", "offer:updated"))
    assert acc.payload["orderId"] == "ord-1" and acc.payload["offer"]["status"] == "ACCEPTED"
    assert rej.targets == (("vendor:a", "offer:rejected"), ("room", "offer:updated"))
    assert rej.payload["offer"]["status"] == "REJECTED"
    assert closed.targets == (("nearby", "request:closed"), ("room", "request:closed"))
    assert closed.payload == {"requestId": "req-1", "reason": "accepted", "seq": closed.seq}
    assert views.order_view(order) == {
        "id": "ord-1",
        "requestId": "req-1",
        "offerId": "off-b-1",
        "customerId": CUSTOMER,
        "vendorId": "b",
        "riderId": None,
        "amountKobo": 350_000,
        "status": "PENDING_PAYMENT",
        "paymentStatus": "PENDING",
        "etaMinutes": None,
        "deliveryLat": 6.5244,
        "deliveryLng": 3.3792,
        "createdAt": "2026-11-25T20:01:00.000Z",
        "updatedAt": "2026-11-25T20:01:00.000Z",
        "seq": 0,
    }


def test_accept_countered_offer_takes_vendor_price() -> None:
    req, _ = place(new_request(), "v1", 450_000)
    req, _ = counter(req, 300_000)
    _, _, order = accept(req, "off-v1-0")
    assert order.amount_kobo == 450_000


def test_accept_refusals() -> None:
    req = place_all(new_request(), ("a", 300_000), ("b", 350_000))
    assert_refused(req, lambda: accept(req, "off-a-0", customer="intruder"), "forbidden")
    assert_refused(req, lambda: accept(req, "intruder-offer", customer="intruder"), "forbidden")
    assert_refused(req, lambda: accept(req, "nope"), "not_found")
    assert_refused(req, lambda: accept(req, "off-a-0", at=req.expires_at), "expired")
    req, _ = n.reject_offer(req, RejectOffer(customer_id=CUSTOMER, offer_id="off-b-1", now=T0))
    assert_refused(req, lambda: accept(req, "off-b-1"), "conflict")
    req, _, _ = accept(req, "off-a-0")
    assert_refused(req, lambda: accept(req, "off-a-0"), "conflict")


# ---------------------------------------------------------------- reject_offer


def test_reject_offer_happy_path() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, events = n.reject_offer(req, RejectOffer(customer_id=CUSTOMER, offer_id="off-a-0", now=LATER))
    assert req.offers["off-a-0"].status == "REJECTED" and req.status == "OPEN"
    assert [e.kind for e in events] == ["offer:rejected", "offer:updated"]
    assert events[0].targets == (("vendor:a", "offer:rejected"), ("room", "offer:updated"))
    assert events[1].payload["offer"]["vendorId"] == "b" and events[1].payload["offer"]["isCompetitive"]
    check_seqs(req, events, 4)


def test_reject_refusals() -> None:
    req, _ = place(new_request(), "a", 100)

    def reject(offer: str = "off-a-0", customer: str = CUSTOMER, at: datetime = T0) -> tuple[MealRequest, list[Event]]:
        return n.reject_offer(req, RejectOffer(customer_id=customer, offer_id=offer, now=at))

    assert_refused(req, lambda: reject(customer="x"), "forbidden")
    assert_refused(req, lambda: reject(offer="nope"), "not_found")
    assert_refused(req, lambda: reject(at=req.expires_at), "expired")
    req, _ = reject()
    assert_refused(req, reject, "conflict")


# ---------------------------------------------------------------- cancel_request


def test_cancel_request_happy_path() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, _ = counter(req, 250, offer="off-b-1")
    req, _ = place(req, "c", 200)
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0))
    start = req.seq + 1
    req, events = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=LATER))
    assert req.status == "CANCELLED" and req.accepted_offer_id is None
    assert {o.vendor_id: o.status for o in req.offers.values()} == {"a": "REJECTED", "b": "REJECTED", "c": "WITHDRAWN"}
    assert [(e.kind, e.targets[0][0]) for e in events] == [
        ("offer:rejected", "vendor:a"),
        ("offer:rejected", "vendor:b"),
        ("request:closed", "nearby"),
    ]
    assert events[-1].targets == (("nearby", "request:closed"), ("room", "request:closed"))
    assert events[-1].payload["reason"] == "cancelled"
    check_seqs(req, events, start)


def test_cancel_past_expiry_before_the_timer_fires() -> None:
    req = new_request()
    req, _ = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=req.expires_at + timedelta(minutes=1)))
    assert req.status == "CANCELLED"


def test_cancel_refusals() -> None:
    req = new_request()
    assert_refused(req, lambda: n.cancel_request(req, CancelRequest(customer_id="x", now=T0)), "forbidden")
    req, _ = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    assert_refused(req, lambda: n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0)), "conflict")
    other = new_request()
    other, _ = n.expire_request(other, other.expires_at)
    assert_refused(other, lambda: n.cancel_request(other, CancelRequest(customer_id=CUSTOMER, now=T0)), "conflict")


# ---------------------------------------------------------------- expire_request


def test_expire_request_is_a_noop_before_its_time() -> None:
    req, _ = place(new_request(), "a", 100)
    before = deepcopy(req)
    assert n.expire_request(req, req.expires_at - timedelta(microseconds=1)) == (req, [])
    assert req == before


def test_expire_request_happy_path_and_idempotence() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, _ = counter(req, 250, offer="off-b-1")
    req, _ = n.reject_offer(req, RejectOffer(customer_id=CUSTOMER, offer_id="off-a-0", now=T0))
    start = req.seq + 1
    late = req.expires_at + timedelta(seconds=30)
    req, events = n.expire_request(req, late)
    assert req.status == "EXPIRED"
    assert {o.vendor_id: o.status for o in req.offers.values()} == {"a": "REJECTED", "b": "EXPIRED"}
    assert req.offers["off-b-1"].updated_at == late
    assert [e.kind for e in events] == ["offer:expired", "request:expired", "request:closed"]
    check_seqs(req, events, start)
    assert events[0].targets == (("vendor:b", "offer:expired"), ("room", "offer:updated"))
    assert events[1].targets == (("room", "request:expired"),)
    assert events[1].payload == {"requestId": "req-1", "seq": events[1].seq}
    assert events[2].payload["reason"] == "expired"
    assert ("nearby", "request:closed") in events[2].targets
    after = deepcopy(req)
    again, no_events = n.expire_request(req, late + timedelta(hours=1))
    assert again is req and no_events == [] and req == after


def test_expire_does_nothing_to_closed_requests() -> None:
    req, _ = place(new_request(), "a", 100)
    req, _, _ = accept(req, "off-a-0")
    before = deepcopy(req)
    assert n.expire_request(req, req.expires_at + timedelta(days=1)) == (req, [])
    assert req == before


# ---------------------------------------------------------------- seqs and audiences, whole negotiation


def test_full_negotiation_has_gap_free_seqs_and_room_targets() -> None:
    req, events = n.create_request(create_cmd())
    steps: list[Callable[[MealRequest], tuple[Any, ...]]] = [
        lambda r: place(r, "a", 400_000),
        lambda r: place(r, "b", 300_000),
        lambda r: place(r, "c", 350_000),
        lambda r: counter(r, 280_000, offer="off-b-1"),
        lambda r: n.accept_counter(r, AcceptCounter(vendor_id="b", offer_id="off-b-1", now=T0)),
        lambda r: n.revise_offer(r, ReviseOffer(offer_id="off-a-0", vendor_id="a", price_kobo=200_000, now=T0)),
        lambda r: n.withdraw_offer(r, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0)),
        lambda r: accept(r, "off-b-1"),
    ]
    for step in steps:
        req, new_events, *_ = step(req)
        events += new_events
    assert [e.seq for e in events] == list(range(1, req.seq + 1))
    assert all(e.payload["seq"] == e.seq for e in events)
    assert all(any(aud == "room" for aud, _ in e.targets) for e in events[1:])
    assert views.request_view(req)["seq"] == req.seq


# ---------------------------------------------------------------- geometry


def test_distance_and_coverage() -> None:
    assert geometry.distance_km(6.5, 3.3, 6.5, 3.3) == 0.0
    # one degree of latitude is ~111.2 km
    assert geometry.distance_km(0, 0, 1, 0) == pytest.approx(111.2, abs=0.1)
    # Lagos Island to Ikeja, ~17 km as the crow flies
    assert geometry.distance_km(6.4541, 3.3947, 6.6018, 3.3515) == pytest.approx(17.0, abs=1.0)
    assert geometry.distance_km(0, 179.9, 0, -179.9) == pytest.approx(22.2, abs=0.1)
    assert geometry.distance_km(90, 0, -90, 0) == pytest.approx(20015.1, abs=1.0)
    assert geometry.covers(0, 0, 111.3, 1, 0) and not geometry.covers(0, 0, 111.1, 1, 0)
    assert geometry.covers(6.5, 3.3, 0, 6.5, 3.3)


def test_domain_error_shape() -> None:
    err = DomainError("conflict", "nope")
    assert (err.code, err.message, err.details, str(err)) == ("conflict", "nope", None, "nope")
    assert err.to_dict() == {"code": "conflict", "message": "nope"}
    assert DomainError("invalid", "bad", {"x": "y"}).to_dict()["details"] == {"x": "y"}
