"""Unit tests for engine.negotiation: every rule's happy path, every error code, events and views."""

from __future__ import annotations

import sys
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engine import negotiation as n
from engine.negotiation import (
    AcceptCounter,
    AcceptOffer,
    CancelRequest,
    CounterOffer,
    CreateRequest,
    DomainError,
    Event,
    MealRequest,
    PlaceOffer,
    RejectOffer,
    ReviseOffer,
    WithdrawOffer,
)

T0 = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
CUSTOMER = "cust-1"

REQUEST_FIELDS = {
    "id", "customerId", "category", "budgetMinKobo", "budgetMaxKobo", "deliveryLat", "deliveryLng",
    "addressLine", "notes", "desiredAt", "status", "expiresAt", "maxVendorOffers", "offerCount",
    "createdAt", "seq",
}
OFFER_FIELDS = {
    "id", "requestId", "vendorId", "vendorName", "priceKobo", "details", "prepMinutes", "slotFrom",
    "slotTo", "status", "counterPriceKobo", "round", "isCompetitive", "overBudget", "createdAt", "updatedAt",
}
ORDER_FIELDS = {
    "id", "requestId", "offerId", "customerId", "vendorId", "riderId", "amountKobo", "status",
    "paymentStatus", "etaMinutes", "deliveryLat", "deliveryLng", "createdAt", "updatedAt", "seq",
}


def create_cmd(**kw: Any) -> CreateRequest:
    args: dict[str, Any] = dict(
        request_id="req-1", customer_id=CUSTOMER, category="jollof", budget_min_kobo=200_000,
        budget_max_kobo=500_000, delivery_lat=6.5244, delivery_lng=3.3792,
        address_line="12 Allen Avenue, Ikeja", now=T0,
    )
    args.update(kw)
    return CreateRequest(**args)


def new_request(**kw: Any) -> MealRequest:
    req, _ = n.create_request(create_cmd(**kw))
    return req


def place(req: MealRequest, vendor: str, price: int, at: datetime = T0, **kw: Any) -> list[Event]:
    args: dict[str, Any] = dict(
        offer_id=f"off-{vendor}-{len(req.offers)}", vendor_id=vendor, vendor_name=f"Kitchen {vendor}",
        vendor_verified=True, vendor_lat=req.delivery_lat, vendor_lng=req.delivery_lng, vendor_km=5.0,
        price_kobo=price, now=at,
    )
    args.update(kw)
    return n.place_offer(req, PlaceOffer(**args))


def offer_of(req: MealRequest, vendor: str) -> n.Offer:
    return [o for o in req.offers.values() if o.vendor_id == vendor][-1]


def refused(req: MealRequest, fn: Callable[[], object], code: str) -> DomainError:
    """Run a command expected to fail: check its code and that the state is untouched."""
    before = deepcopy(req)
    with pytest.raises(DomainError) as info:
        fn()
    assert info.value.code == code, info.value.message
    assert req == before
    return info.value


def check_seqs(req: MealRequest, events: list[Event], start: int) -> None:
    assert [e.seq for e in events] == list(range(start, start + len(events)))
    assert all(e.payload["seq"] == e.seq for e in events)
    assert req.seq == start + len(events) - 1


def targets(e: Event) -> set[tuple[str, str]]:
    return set(e.targets)


LATER = T0 + timedelta(minutes=1)


# ---------------------------------------------------------------- create_request


def test_create_request_happy_path() -> None:
    req, events = n.create_request(create_cmd(notes="no pepper", desired_at=T0 + timedelta(hours=1)))
    assert req.status == "OPEN" and req.seq == 1 and req.offers == {}
    assert req.expires_at == T0 + timedelta(minutes=15)
    assert req.max_vendor_offers == 10
    assert req.accepted_offer_id is None and req.order_id is None
    [e] = events
    assert e.seq == 1 and e.kind == "request:new"
    assert e.targets == (("nearby", "request:new"),)
    assert e.payload == {"request": n.request_view(req), "seq": 1}
    view = e.payload["request"]
    assert view["seq"] == 1 and view["offerCount"] == 0 and view["status"] == "OPEN"
    assert view["expiresAt"] == "2026-11-25T20:15:00.000Z"
    assert view["desiredAt"] == "2026-11-25T21:00:00.000Z"
    assert view["notes"] == "no pepper"


def test_create_request_custom_expiry_and_limit() -> None:
    req = new_request(expires_in_minutes=120, max_vendor_offers=20)
    assert req.expires_at == T0 + timedelta(minutes=120)
    assert req.max_vendor_offers == 20


def test_desired_at_within_grace_is_accepted() -> None:
    req = new_request(desired_at=T0 - timedelta(minutes=4, seconds=59))
    assert req.desired_at is not None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"budget_min_kobo": 0}, "budgetMinKobo"),
        ({"budget_min_kobo": True}, "budgetMinKobo"),
        ({"budget_min_kobo": 1.5}, "budgetMinKobo"),
        ({"budget_max_kobo": n.MAX_BUDGET_KOBO + 1}, "budgetMaxKobo"),
        ({"budget_max_kobo": "500000"}, "budgetMaxKobo"),
        ({"budget_min_kobo": 600_000, "budget_max_kobo": 500_000}, "budgetMaxKobo"),
        ({"delivery_lat": 90.01}, "deliveryLat"),
        ({"delivery_lat": float("nan")}, "deliveryLat"),
        ({"delivery_lat": True}, "deliveryLat"),
        ({"delivery_lng": -180.5}, "deliveryLng"),
        ({"category": ""}, "category"),
        ({"category": "x" * 65}, "category"),
        ({"category": None}, "category"),
        ({"address_line": "   "}, "addressLine"),
        ({"address_line": "a" * 257}, "addressLine"),
        ({"notes": "n" * 1001}, "notes"),
        ({"desired_at": T0 - timedelta(minutes=5, seconds=1)}, "desiredAt"),
        ({"desired_at": datetime(2026, 11, 25, 21, 0)}, "desiredAt"),
        ({"expires_in_minutes": 0}, "expiresInMinutes"),
        ({"expires_in_minutes": 121}, "expiresInMinutes"),
        ({"max_vendor_offers": 0}, "maxVendorOffers"),
        ({"max_vendor_offers": 21}, "maxVendorOffers"),
    ],
)
def test_create_request_invalid(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(DomainError) as info:
        n.create_request(create_cmd(**overrides))
    assert info.value.code == "invalid"
    assert info.value.details is not None and set(info.value.details) == {field}


def test_create_request_boundaries_are_inclusive() -> None:
    req = new_request(budget_min_kobo=1, budget_max_kobo=n.MAX_BUDGET_KOBO, delivery_lat=-90,
                      delivery_lng=180, category="c" * 64, address_line="a" * 256, notes="n" * 1000,
                      expires_in_minutes=1, max_vendor_offers=1)
    assert req.delivery_lat == -90.0 and isinstance(req.delivery_lat, float)
    assert new_request(budget_min_kobo=7, budget_max_kobo=7).budget_max_kobo == 7


def test_create_request_reports_every_bad_field_at_once() -> None:
    with pytest.raises(DomainError) as info:
        n.create_request(create_cmd(budget_min_kobo=-1, delivery_lng=200, category=""))
    assert info.value.details is not None
    assert set(info.value.details) == {"budgetMinKobo", "deliveryLng", "category"}
    assert info.value.to_dict()["code"] == "invalid"


# ---------------------------------------------------------------- views


def test_view_field_sets_match_protocol() -> None:
    req = new_request()
    place(req, "v1", 300_000)
    _, order = accept(req, offer_of(req, "v1").id)
    assert set(n.request_view(req)) == REQUEST_FIELDS
    assert set(n.offer_view(offer_of(req, "v1"))) == OFFER_FIELDS
    assert set(n.order_view(order)) == ORDER_FIELDS


def test_iso_times() -> None:
    assert n.iso(None) is None
    assert n.iso(datetime(2026, 11, 25, 20, 1, 2, 123456, tzinfo=UTC)) == "2026-11-25T20:01:02.123Z"
    lagos = timezone(timedelta(hours=1))
    assert n.iso(datetime(2026, 11, 25, 21, 1, 2, 999999, tzinfo=lagos)) == "2026-11-25T20:01:02.999Z"
    assert n.iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"


def test_offer_view_values() -> None:
    req = new_request()
    slot = T0 + timedelta(hours=1)
    place(req, "v1", 600_000, details="with plantain", prep_minutes=30, slot_from=slot, slot_to=slot)
    v = n.offer_view(offer_of(req, "v1"))
    assert v == {
        "id": "off-v1-0", "requestId": "req-1", "vendorId": "v1", "vendorName": "Kitchen v1",
        "priceKobo": 600_000, "details": "with plantain", "prepMinutes": 30,
        "slotFrom": "2026-11-25T21:00:00.000Z", "slotTo": "2026-11-25T21:00:00.000Z", "status": "PENDING",
        "counterPriceKobo": None, "round": 0, "isCompetitive": True, "overBudget": True,
        "createdAt": "2026-11-25T20:00:00.000Z", "updatedAt": "2026-11-25T20:00:00.000Z",
    }


def test_offer_count_counts_live_and_accepted_only() -> None:
    req = new_request()
    place(req, "v1", 300_000)
    place(req, "v2", 310_000)
    place(req, "v3", 320_000)
    assert n.request_view(req)["offerCount"] == 3
    n.withdraw_offer(req, WithdrawOffer(vendor_id="v3", offer_id=offer_of(req, "v3").id, now=T0))
    assert n.request_view(req)["offerCount"] == 2
    n.accept_offer(req, AcceptOffer(customer_id=CUSTOMER, offer_id=offer_of(req, "v1").id,
                                    order_id="o", now=T0))
    assert n.request_view(req)["offerCount"] == 1  # v2 rejected, v3 withdrawn


def test_state_is_slotted_and_small() -> None:
    req = new_request(notes="x" * 1000, desired_at=T0)
    events = place(req, "v1", 300_000)
    _, order = accept(req, "off-v1-0")
    for obj in (req, req.offers["off-v1-0"], order, events[0], create_cmd()):
        assert not hasattr(obj, "__dict__"), type(obj)
    idle = new_request(notes="x" * 1000, desired_at=T0)
    size = sys.getsizeof(idle) + sum(sys.getsizeof(getattr(idle, s)) for s in MealRequest.__slots__)
    assert size < 4096


# ---------------------------------------------------------------- place_offer


def test_place_offer_happy_path() -> None:
    req = new_request()
    events = place(req, "v1", 450_000, details="jollof + chicken", prep_minutes=25)
    offer = offer_of(req, "v1")
    assert offer.status == "PENDING" and offer.round == 0 and offer.counter_price_kobo is None
    assert offer.is_competitive and not offer.over_budget
    assert offer.created_at == offer.updated_at == T0
    [e] = events
    assert e.kind == "offer:new" and e.targets == (("room", "offer:new"),)
    assert e.payload == {"offer": n.offer_view(offer), "seq": 2}
    check_seqs(req, events, 2)


def test_place_offer_over_budget() -> None:
    req = new_request()
    place(req, "v1", 500_001)
    place(req, "v2", 500_000)
    assert offer_of(req, "v1").over_budget and not offer_of(req, "v2").over_budget


def test_place_offer_flips_other_offers() -> None:
    req = new_request()
    place(req, "v1", 400_000)
    events = place(req, "v2", 300_000, at=LATER)
    # live prices 300k, 400k: median 350k, so v1 is no longer competitive
    assert [e.kind for e in events] == ["offer:new", "offer:updated"]
    check_seqs(req, events, 3)
    assert events[0].payload["offer"]["isCompetitive"] is True
    flip = events[1]
    assert flip.payload["offer"]["vendorId"] == "v1" and flip.payload["offer"]["isCompetitive"] is False
    assert targets(flip) == {("room", "offer:updated"), ("vendor:v1", "offer:updated")}
    assert offer_of(req, "v1").updated_at == LATER


def test_vendor_may_bid_again_after_withdrawing() -> None:
    req = new_request()
    place(req, "v1", 400_000)
    n.withdraw_offer(req, WithdrawOffer(vendor_id="v1", offer_id="off-v1-0", now=T0))
    place(req, "v1", 390_000, offer_id="off-v1-again")
    assert req.offers["off-v1-again"].status == "PENDING"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"price_kobo": 0}, "priceKobo"),
        ({"price_kobo": True}, "priceKobo"),
        ({"price_kobo": "100"}, "priceKobo"),
        ({"price_kobo": n.MAX_BUDGET_KOBO * 2 + 1}, "priceKobo"),
        ({"details": "d" * 501}, "details"),
        ({"prep_minutes": 0}, "prepMinutes"),
        ({"prep_minutes": 601}, "prepMinutes"),
        ({"slot_from": T0 + timedelta(hours=2), "slot_to": T0 + timedelta(hours=1)}, "slotTo"),
    ],
)
def test_place_offer_invalid(kw: dict[str, Any], field: str) -> None:
    req = new_request()
    price = kw.pop("price_kobo", 300_000)
    err = refused(req, lambda: place(req, "v1", price, **kw), "invalid")
    assert err.details is not None and set(err.details) == {field}


def test_place_offer_limits_are_inclusive() -> None:
    req = new_request()
    place(req, "v1", n.MAX_BUDGET_KOBO * 2, details="d" * 500, prep_minutes=600)
    place(req, "v2", 1, prep_minutes=1)


def test_place_offer_refusals() -> None:
    req = new_request(max_vendor_offers=2)
    refused(req, lambda: place(req, "v1", 1, vendor_verified=False), "forbidden")
    refused(req, lambda: place(req, "v1", 1, vendor_lat=req.delivery_lat + 1.0), "forbidden")
    place(req, "v1", 300_000)
    refused(req, lambda: place(req, "v1", 290_000, offer_id="other"), "conflict")
    refused(req, lambda: place(req, "v2", 290_000, offer_id="off-v1-0"), "conflict")
    place(req, "v2", 310_000)
    refused(req, lambda: place(req, "v3", 305_000), "limit_reached")
    refused(req, lambda: place(req, "v3", 305_000, at=req.expires_at), "expired")
    n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    refused(req, lambda: place(req, "v3", 305_000), "conflict")


def test_place_offer_check_order() -> None:
    """Request state first (conflict, expired), then the vendor (forbidden), then the payload."""
    req = new_request()
    late = req.expires_at
    refused(req, lambda: place(req, "v1", 0, at=late, vendor_verified=False), "expired")
    refused(req, lambda: place(req, "v1", 0, vendor_verified=False), "forbidden")
    n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    refused(req, lambda: place(req, "v1", 0, at=late, vendor_verified=False), "conflict")


# ---------------------------------------------------------------- competitiveness (median)


def _flags(req: MealRequest) -> dict[str, bool]:
    return {o.vendor_id: o.is_competitive for o in req.offers.values()}


def test_single_offer_is_competitive() -> None:
    req = new_request()
    place(req, "v1", n.MAX_BUDGET_KOBO * 2)
    assert _flags(req) == {"v1": True}


def test_median_odd_count() -> None:
    req = new_request()
    for v, p in (("a", 300), ("b", 100), ("c", 200)):
        place(req, v, p)
    assert _flags(req) == {"a": False, "b": True, "c": True}


def test_median_even_count_uses_mean_of_middle_values() -> None:
    req = new_request()
    for v, p in (("a", 100), ("b", 201), ("c", 200), ("d", 400)):
        place(req, v, p)
    # middle values 200 and 201: median 200.5, so 201 is above it
    assert _flags(req) == {"a": True, "b": False, "c": True, "d": False}


def test_median_even_count_at_exact_mean() -> None:
    req = new_request()
    for v, p in (("a", 100), ("b", 300)):
        place(req, v, p)
    assert _flags(req) == {"a": True, "b": False}
    place(req, "c", 200)  # median 200 exactly
    assert _flags(req) == {"a": True, "b": False, "c": True}


def test_median_ties() -> None:
    req = new_request()
    for v in ("a", "b", "c"):
        place(req, v, 500)
    assert _flags(req) == {"a": True, "b": True, "c": True}
    place(req, "d", 100)  # 100, 500, 500, 500: median 500, all still competitive
    assert _flags(req) == {"a": True, "b": True, "c": True, "d": True}


def test_recompute_returns_only_flipped_live_offers() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    assert n.recompute_competitive(req) == []
    req.offers["off-b-1"].price_kobo = 50
    assert {o.vendor_id for o in n.recompute_competitive(req)} == {"a", "b"}


def test_non_live_offers_keep_their_last_flag() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    n.withdraw_offer(req, WithdrawOffer(vendor_id="b", offer_id="off-b-1", now=LATER))
    place(req, "c", 1000)
    assert req.offers["off-b-1"].is_competitive is False
    n.withdraw_offer(req, WithdrawOffer(vendor_id="a", offer_id="off-a-0", now=LATER))
    assert req.offers["off-a-0"].is_competitive is True  # kept, though 100 < 1000 alone now
    assert req.offers["off-c-2"].is_competitive is True  # alone: competitive


def test_recompute_with_no_live_offers() -> None:
    assert n.recompute_competitive(new_request()) == []


# ---------------------------------------------------------------- revise_offer


def test_revise_offer_happy_path() -> None:
    req = new_request()
    place(req, "v1", 300_000, details="d", prep_minutes=20)
    cmd = ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=600_000, now=LATER)
    events = n.revise_offer(req, cmd)
    o = offer_of(req, "v1")
    assert (o.price_kobo, o.details, o.prep_minutes, o.over_budget) == (600_000, "d", 20, True)
    assert o.updated_at == LATER
    [e] = events
    assert e.kind == "offer:updated" and e.targets == (("room", "offer:updated"),)
    check_seqs(req, events, 3)
    n.revise_offer(req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=1, details="new",
                                    prep_minutes=5, now=LATER))
    assert (o.details, o.prep_minutes, o.over_budget) == ("new", 5, False)


def test_revise_answers_a_counter() -> None:
    req = new_request()
    place(req, "v1", 450_000)
    n.counter_offer(req, CounterOffer(customer_id=CUSTOMER, offer_id="off-v1-0", price_kobo=350_000, now=T0))
    n.revise_offer(req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=400_000, now=LATER))
    o = offer_of(req, "v1")
    assert (o.status, o.price_kobo, o.counter_price_kobo, o.round) == ("PENDING", 400_000, 350_000, 1)


def test_revise_flips_others_but_not_itself_as_separate_event() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    events = n.revise_offer(req, ReviseOffer(offer_id="off-b-1", vendor_id="b", price_kobo=50, now=LATER))
    assert [(e.kind, e.payload["offer"]["vendorId"]) for e in events] == [
        ("offer:updated", "b"), ("offer:updated", "a")]
    assert events[0].payload["offer"]["isCompetitive"] is True
    assert events[1].payload["offer"]["isCompetitive"] is False
    assert targets(events[1]) == {("room", "offer:updated"), ("vendor:a", "offer:updated")}
    check_seqs(req, events, 4)


def test_revise_refusals() -> None:
    req = new_request()
    place(req, "v1", 300_000)

    def revise(vendor: str = "v1", offer: str = "off-v1-0", price: Any = 200_000,
               at: datetime = T0, **kw: Any) -> list[Event]:
        cmd = ReviseOffer(offer_id=offer, vendor_id=vendor, price_kobo=price, now=at, **kw)
        return n.revise_offer(req, cmd)

    refused(req, lambda: revise(offer="nope"), "not_found")
    refused(req, lambda: revise(vendor="v2"), "forbidden")
    refused(req, lambda: revise(at=req.expires_at), "expired")
    refused(req, lambda: revise(price=0), "invalid")
    refused(req, lambda: revise(details="d" * 501), "invalid")
    refused(req, lambda: revise(prep_minutes=601), "invalid")
    n.withdraw_offer(req, WithdrawOffer(vendor_id="v1", offer_id="off-v1-0", now=T0))
    refused(req, revise, "conflict")
    n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    refused(req, revise, "conflict")


# ---------------------------------------------------------------- withdraw_offer


def test_withdraw_offer_happy_path_with_flip() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    events = n.withdraw_offer(req, WithdrawOffer(vendor_id="a", offer_id="off-a-0", now=LATER))
    assert req.offers["off-a-0"].status == "WITHDRAWN" and req.offers["off-a-0"].updated_at == LATER
    assert [e.kind for e in events] == ["offer:withdrawn", "offer:updated"]
    assert events[0].targets == (("room", "offer:withdrawn"),)
    assert events[1].payload["offer"]["vendorId"] == "b" and events[1].payload["offer"]["isCompetitive"]
    check_seqs(req, events, 4)


def test_withdraw_refusals() -> None:
    req = new_request()
    place(req, "v1", 300_000)

    def withdraw(vendor: str = "v1", offer: str = "off-v1-0", at: datetime = T0) -> list[Event]:
        return n.withdraw_offer(req, WithdrawOffer(vendor_id=vendor, offer_id=offer, now=at))

    refused(req, lambda: withdraw(offer="nope"), "not_found")
    refused(req, lambda: withdraw(vendor="v2"), "forbidden")
    refused(req, lambda: withdraw(at=req.expires_at), "expired")
    withdraw()
    refused(req, withdraw, "conflict")


# ---------------------------------------------------------------- counter_offer and accept_counter


def counter(req: MealRequest, price: Any, offer: str = "off-v1-0", customer: str = CUSTOMER,
            at: datetime = T0, message: str | None = None) -> list[Event]:
    return n.counter_offer(req, CounterOffer(customer_id=customer, offer_id=offer, price_kobo=price,
                                             now=at, message=message))


def test_counter_offer_happy_path() -> None:
    req = new_request()
    place(req, "v1", 450_000)
    events = counter(req, 350_000, at=LATER, message="can you do 3.5k?")
    o = offer_of(req, "v1")
    assert (o.status, o.counter_price_kobo, o.round, o.price_kobo, o.updated_at) == (
        "COUNTERED", 350_000, 1, 450_000, LATER)
    [e] = events
    assert e.kind == "offer:countered"
    assert e.targets == (("vendor:v1", "offer:countered"), ("room", "offer:updated"))
    assert e.payload == {"offer": n.offer_view(o), "message": "can you do 3.5k?", "seq": 3}
    check_seqs(req, events, 3)


def test_counter_without_message_has_no_message_key() -> None:
    req = new_request()
    place(req, "v1", 450_000)
    [e] = counter(req, 350_000)
    assert set(e.payload) == {"offer", "seq"}


def test_counter_does_not_change_competitiveness() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    events = counter(req, 50, offer="off-b-1")
    assert len(events) == 1 and _flags(req) == {"a": True, "b": False}


def test_counter_rounds_are_limited() -> None:
    req = new_request()
    place(req, "v1", 450_000)
    for i in range(n.MAX_COUNTER_ROUNDS):
        counter(req, 300_000 + i)
        n.revise_offer(req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=400_000, now=T0))
    assert offer_of(req, "v1").round == 3
    refused(req, lambda: counter(req, 300_000), "limit_reached")


def test_counter_refusals() -> None:
    req = new_request()
    place(req, "v1", 450_000)
    place(req, "v2", 460_000)
    refused(req, lambda: counter(req, 1, customer="someone-else"), "forbidden")
    refused(req, lambda: counter(req, 1, offer="nope"), "not_found")
    refused(req, lambda: counter(req, 1, at=req.expires_at), "expired")
    refused(req, lambda: counter(req, 0), "invalid")
    refused(req, lambda: counter(req, False), "invalid")
    refused(req, lambda: counter(req, 1, message="m" * 501), "invalid")
    counter(req, 400_000)
    err = refused(req, lambda: counter(req, 390_000), "conflict")
    assert "waiting" in err.message
    n.withdraw_offer(req, WithdrawOffer(vendor_id="v2", offer_id="off-v2-1", now=T0))
    refused(req, lambda: counter(req, 1, offer="off-v2-1"), "conflict")


def test_accept_counter_happy_path() -> None:
    req = new_request()
    place(req, "a", 550_000)
    place(req, "b", 400_000)
    counter(req, 300_000, offer="off-a-0")
    start = req.seq + 1
    events = n.accept_counter(req, AcceptCounter(vendor_id="a", offer_id="off-a-0", now=LATER))
    a = req.offers["off-a-0"]
    assert (a.status, a.price_kobo, a.counter_price_kobo, a.round, a.over_budget, a.is_competitive) == (
        "PENDING", 300_000, 300_000, 1, False, True)
    assert [(e.kind, e.payload["offer"]["vendorId"]) for e in events] == [
        ("offer:updated", "a"), ("offer:updated", "b")]
    assert events[0].targets == (("room", "offer:updated"),)
    assert req.offers["off-b-1"].is_competitive is False
    check_seqs(req, events, start)


def test_accept_counter_refusals() -> None:
    req = new_request()
    place(req, "v1", 450_000)

    def accept(vendor: str = "v1", offer: str = "off-v1-0", at: datetime = T0) -> list[Event]:
        return n.accept_counter(req, AcceptCounter(vendor_id=vendor, offer_id=offer, now=at))

    refused(req, accept, "conflict")  # nothing countered yet
    counter(req, 400_000)
    refused(req, lambda: accept(offer="nope"), "not_found")
    refused(req, lambda: accept(vendor="v2"), "forbidden")
    refused(req, lambda: accept(at=req.expires_at), "expired")
    accept()
    refused(req, accept, "conflict")


# ---------------------------------------------------------------- accept_offer


def accept(req: MealRequest, offer: str, customer: str = CUSTOMER, at: datetime = LATER) -> tuple[
        list[Event], n.NewOrder]:
    return n.accept_offer(req, AcceptOffer(customer_id=customer, offer_id=offer, order_id="ord-1", now=at))


def test_accept_offer_happy_path() -> None:
    req = new_request()
    place(req, "a", 300_000)
    place(req, "b", 350_000)
    place(req, "c", 400_000)
    n.withdraw_offer(req, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0))
    start = req.seq + 1
    events, order = accept(req, "off-b-1")
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
    assert n.order_view(order) == {
        "id": "ord-1", "requestId": "req-1", "offerId": "off-b-1", "customerId": CUSTOMER, "vendorId": "b",
        "riderId": None, "amountKobo": 350_000, "status": "PENDING_PAYMENT", "paymentStatus": "PENDING",
        "etaMinutes": None, "deliveryLat": 6.5244, "deliveryLng": 3.3792,
        "createdAt": "2026-11-25T20:01:00.000Z", "updatedAt": "2026-11-25T20:01:00.000Z", "seq": 0,
    }


def test_accept_countered_offer_takes_vendor_price() -> None:
    req = new_request()
    place(req, "v1", 450_000)
    counter(req, 300_000)
    _, order = accept(req, "off-v1-0")
    assert order.amount_kobo == 450_000


def test_accept_refusals() -> None:
    req = new_request()
    place(req, "a", 300_000)
    place(req, "b", 350_000)
    refused(req, lambda: accept(req, "off-a-0", customer="intruder"), "forbidden")
    refused(req, lambda: accept(req, "intruder-offer", customer="intruder"), "forbidden")
    refused(req, lambda: accept(req, "nope"), "not_found")
    refused(req, lambda: accept(req, "off-a-0", at=req.expires_at), "expired")
    n.reject_offer(req, RejectOffer(customer_id=CUSTOMER, offer_id="off-b-1", now=T0))
    refused(req, lambda: accept(req, "off-b-1"), "conflict")
    accept(req, "off-a-0")
    refused(req, lambda: accept(req, "off-a-0"), "conflict")


# ---------------------------------------------------------------- reject_offer


def test_reject_offer_happy_path() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    events = n.reject_offer(req, RejectOffer(customer_id=CUSTOMER, offer_id="off-a-0", now=LATER))
    assert req.offers["off-a-0"].status == "REJECTED" and req.status == "OPEN"
    assert [e.kind for e in events] == ["offer:rejected", "offer:updated"]
    assert events[0].targets == (("vendor:a", "offer:rejected"), ("room", "offer:updated"))
    assert events[1].payload["offer"]["vendorId"] == "b" and events[1].payload["offer"]["isCompetitive"]
    check_seqs(req, events, 4)


def test_reject_refusals() -> None:
    req = new_request()
    place(req, "a", 100)

    def reject(offer: str = "off-a-0", customer: str = CUSTOMER, at: datetime = T0) -> list[Event]:
        return n.reject_offer(req, RejectOffer(customer_id=customer, offer_id=offer, now=at))

    refused(req, lambda: reject(customer="x"), "forbidden")
    refused(req, lambda: reject(offer="nope"), "not_found")
    refused(req, lambda: reject(at=req.expires_at), "expired")
    reject()
    refused(req, reject, "conflict")


# ---------------------------------------------------------------- cancel_request


def test_cancel_request_happy_path() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    counter(req, 250, offer="off-b-1")
    place(req, "c", 200)
    n.withdraw_offer(req, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0))
    start = req.seq + 1
    events = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=LATER))
    assert req.status == "CANCELLED" and req.accepted_offer_id is None
    assert {o.vendor_id: o.status for o in req.offers.values()} == {"a": "REJECTED", "b": "REJECTED",
                                                                    "c": "WITHDRAWN"}
    assert [(e.kind, e.targets[0][0]) for e in events] == [
        ("offer:rejected", "vendor:a"), ("offer:rejected", "vendor:b"), ("request:closed", "nearby")]
    assert events[-1].targets == (("nearby", "request:closed"), ("room", "request:closed"))
    assert events[-1].payload["reason"] == "cancelled"
    check_seqs(req, events, start)


def test_cancel_past_expiry_before_the_timer_fires() -> None:
    req = new_request()
    n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=req.expires_at + timedelta(minutes=1)))
    assert req.status == "CANCELLED"


def test_cancel_refusals() -> None:
    req = new_request()
    refused(req, lambda: n.cancel_request(req, CancelRequest(customer_id="x", now=T0)), "forbidden")
    n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    refused(req, lambda: n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0)), "conflict")
    other = new_request()
    n.expire_request(other, other.expires_at)
    refused(other, lambda: n.cancel_request(other, CancelRequest(customer_id=CUSTOMER, now=T0)), "conflict")


# ---------------------------------------------------------------- expire_request


def test_expire_request_is_a_noop_before_its_time() -> None:
    req = new_request()
    place(req, "a", 100)
    before = deepcopy(req)
    assert n.expire_request(req, req.expires_at - timedelta(microseconds=1)) == []
    assert req == before


def test_expire_request_happy_path_and_idempotence() -> None:
    req = new_request()
    place(req, "a", 100)
    place(req, "b", 300)
    counter(req, 250, offer="off-b-1")
    n.reject_offer(req, RejectOffer(customer_id=CUSTOMER, offer_id="off-a-0", now=T0))
    start = req.seq + 1
    late = req.expires_at + timedelta(seconds=30)
    events = n.expire_request(req, late)
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
    assert n.expire_request(req, late + timedelta(hours=1)) == []
    assert req == after


def test_expire_does_nothing_to_closed_requests() -> None:
    req = new_request()
    place(req, "a", 100)
    accept(req, "off-a-0")
    before = deepcopy(req)
    assert n.expire_request(req, req.expires_at + timedelta(days=1)) == []
    assert req == before


# ---------------------------------------------------------------- seqs and audiences, whole negotiation


def test_full_negotiation_has_gap_free_seqs_and_room_targets() -> None:
    req, events = n.create_request(create_cmd())
    events += place(req, "a", 400_000)
    events += place(req, "b", 300_000)
    events += place(req, "c", 350_000)
    events += counter(req, 280_000, offer="off-b-1")
    events += n.accept_counter(req, AcceptCounter(vendor_id="b", offer_id="off-b-1", now=T0))
    events += n.revise_offer(req, ReviseOffer(offer_id="off-a-0", vendor_id="a", price_kobo=200_000, now=T0))
    events += n.withdraw_offer(req, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0))
    events += accept(req, "off-b-1")[0]
    assert [e.seq for e in events] == list(range(1, req.seq + 1))
    assert all(e.payload["seq"] == e.seq for e in events)
    assert all(any(aud == "room" for aud, _ in e.targets) for e in events[1:])
    assert n.request_view(req)["seq"] == req.seq


# ---------------------------------------------------------------- geometry


def test_distance_and_coverage() -> None:
    assert n.distance_km(6.5, 3.3, 6.5, 3.3) == 0.0
    # one degree of latitude is ~111.2 km
    assert n.distance_km(0, 0, 1, 0) == pytest.approx(111.2, abs=0.1)
    # Lagos Island to Ikeja, ~17 km as the crow flies
    assert n.distance_km(6.4541, 3.3947, 6.6018, 3.3515) == pytest.approx(17.0, abs=1.0)
    assert n.distance_km(0, 179.9, 0, -179.9) == pytest.approx(22.2, abs=0.1)
    assert n.distance_km(90, 0, -90, 0) == pytest.approx(20015.1, abs=1.0)
    assert n.covers(0, 0, 111.3, 1, 0) and not n.covers(0, 0, 111.1, 1, 0)
    assert n.covers(6.5, 3.3, 0, 6.5, 3.3)


def test_domain_error_shape() -> None:
    err = DomainError("conflict", "nope")
    assert (err.code, err.message, err.details, str(err)) == ("conflict", "nope", None, "nope")
    assert err.to_dict() == {"code": "conflict", "message": "nope"}
    assert DomainError("invalid", "bad", {"x": "y"}).to_dict()["details"] == {"x": "y"}
