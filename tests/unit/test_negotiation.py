"""Unit tests for engine.negotiation: every rule's happy path, every error code, events and views."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engine import limits
from engine import negotiation as n
from engine import negotiation_views as views
from engine.clock import iso
from engine.limits import MAX_PRICE_KOBO
from engine.negotiation import (
    AcceptCounter,
    AcceptOffer,
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
    OFFER_FIELDS,
    ORDER_FIELDS,
    REQUEST_FIELDS,
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
    targets,
    unchanged,
)

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
    assert e.payload == {"request": views.request_view(req), "seq": 1}
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
        ({"budget_max_kobo": limits.MAX_BUDGET_KOBO + 1}, "budgetMaxKobo"),
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
    req = new_request(
        budget_min_kobo=1,
        budget_max_kobo=limits.MAX_BUDGET_KOBO,
        delivery_lat=-90,
        delivery_lng=180,
        category="c" * 64,
        address_line="a" * 256,
        notes="n" * 1000,
        expires_in_minutes=1,
        max_vendor_offers=1,
    )
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
    req, _ = place(new_request(), "v1", 300_000)
    req, _, order = accept(req, offer_of(req, "v1").id)
    assert set(views.request_view(req)) == REQUEST_FIELDS
    assert set(views.offer_view(offer_of(req, "v1"))) == OFFER_FIELDS
    assert set(views.order_view(order)) == ORDER_FIELDS


def test_iso_times() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 11, 25, 20, 1, 2, 123456, tzinfo=UTC)) == "2026-11-25T20:01:02.123Z"
    lagos = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 11, 25, 21, 1, 2, 999999, tzinfo=lagos)) == "2026-11-25T20:01:02.999Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"  # truncated
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=timezone(timedelta(0), "GMT"))) == "2026-01-02T03:04:05.001Z"
    assert iso(datetime(2026, 1, 2, 0, 0, 0, 0, tzinfo=lagos)) == "2026-01-01T23:00:00.000Z"
    for us in (0, 1, 999, 1000, 123456, 999999):  # the same text as isoformat's milliseconds
        d = datetime(2026, 11, 25, 20, 1, 2, us, tzinfo=UTC)
        assert iso(d) == d.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_offer_view_values() -> None:
    slot = T0 + timedelta(hours=1)
    req, _ = place(new_request(), "v1", 600_000, details="with plantain", prep_minutes=30, slot_from=slot, slot_to=slot)
    v = views.offer_view(offer_of(req, "v1"))
    assert v == {
        "id": "off-v1-0",
        "requestId": "req-1",
        "vendorId": "v1",
        "vendorName": "Kitchen v1",
        "priceKobo": 600_000,
        "details": "with plantain",
        "prepMinutes": 30,
        "slotFrom": "2026-11-25T21:00:00.000Z",
        "slotTo": "2026-11-25T21:00:00.000Z",
        "status": "PENDING",
        "counterPriceKobo": None,
        "round": 0,
        "isCompetitive": True,
        "overBudget": True,
        "createdAt": "2026-11-25T20:00:00.000Z",
        "updatedAt": "2026-11-25T20:00:00.000Z",
    }


def test_offer_count_counts_live_and_accepted_only() -> None:
    req = new_request()
    for vendor, price in (("v1", 300_000), ("v2", 310_000), ("v3", 320_000)):
        req, _ = place(req, vendor, price)
    assert views.request_view(req)["offerCount"] == 3
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="v3", offer_id=offer_of(req, "v3").id, now=T0))
    assert views.request_view(req)["offerCount"] == 2
    req, _, _ = n.accept_offer(
        req, AcceptOffer(customer_id=CUSTOMER, offer_id=offer_of(req, "v1").id, order_id="o", now=T0)
    )
    assert views.request_view(req)["offerCount"] == 1  # v2 rejected, v3 withdrawn


def test_state_is_slotted_and_small() -> None:
    req, events = place(new_request(notes="x" * 1000, desired_at=T0), "v1", 300_000)
    req, _, order = accept(req, "off-v1-0")
    for obj in (req, req.offers["off-v1-0"], order, events[0], create_cmd()):
        assert not hasattr(obj, "__dict__"), type(obj)
    idle = new_request(notes="x" * 1000, desired_at=T0)
    size = sys.getsizeof(idle) + sum(sys.getsizeof(getattr(idle, s)) for s in MealRequest.__slots__)
    assert size < 4096


def test_state_is_frozen() -> None:
    req, _ = place(new_request(), "v1", 300_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.seq = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.offers["off-v1-0"].price_kobo = 1  # type: ignore[misc]


# ---------------------------------------------------------------- place_offer


def test_place_offer_happy_path() -> None:
    req, events = place(new_request(), "v1", 450_000, details="jollof + chicken", prep_minutes=25)
    offer = offer_of(req, "v1")
    assert offer.status == "PENDING" and offer.round == 0 and offer.counter_price_kobo is None
    assert offer.is_competitive and not offer.over_budget
    assert offer.created_at == offer.updated_at == T0
    [e] = events
    assert e.kind == "offer:new" and e.targets == (("room", "offer:new"),)
    assert e.payload == {"offer": views.offer_view(offer), "seq": 2}
    check_seqs(req, events, 2)


def test_place_offer_over_budget() -> None:
    req, _ = place(new_request(), "v1", 500_001)
    req, _ = place(req, "v2", 500_000)
    assert offer_of(req, "v1").over_budget and not offer_of(req, "v2").over_budget


def test_place_offer_flips_other_offers() -> None:
    req, _ = place(new_request(), "v1", 400_000)
    req, events = place(req, "v2", 300_000, at=LATER)
    # live prices 300k, 400k: median 350k, so v1 is no longer competitive
    assert [e.kind for e in events] == ["offer:new", "offer:updated"]
    check_seqs(req, events, 3)
    assert events[0].payload["offer"]["isCompetitive"] is True
    flip = events[1]
    assert flip.payload["offer"]["vendorId"] == "v1" and flip.payload["offer"]["isCompetitive"] is False
    assert targets(flip) == {("room", "offer:updated"), ("vendor:v1", "offer:updated")}
    assert offer_of(req, "v1").updated_at == LATER


def test_vendor_may_bid_again_after_withdrawing() -> None:
    req, _ = place(new_request(), "v1", 400_000)
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="v1", offer_id="off-v1-0", now=T0))
    req, _ = place(req, "v1", 390_000, offer_id="off-v1-again")
    assert req.offers["off-v1-again"].status == "PENDING"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"price_kobo": 0}, "priceKobo"),
        ({"price_kobo": True}, "priceKobo"),
        ({"price_kobo": "100"}, "priceKobo"),
        ({"price_kobo": limits.MAX_PRICE_KOBO + 1}, "priceKobo"),
        ({"details": "d" * 501}, "details"),
        ({"prep_minutes": 0}, "prepMinutes"),
        ({"prep_minutes": 601}, "prepMinutes"),
        ({"slot_from": T0 + timedelta(hours=2), "slot_to": T0 + timedelta(hours=1)}, "slotTo"),
    ],
)
def test_place_offer_invalid(kw: dict[str, Any], field: str) -> None:
    req = new_request()
    price = kw.pop("price_kobo", 300_000)
    err = assert_refused(req, lambda: place(req, "v1", price, **kw), "invalid")
    assert err.details is not None and set(err.details) == {field}


def test_place_offer_limits_are_inclusive() -> None:
    req, _ = place(new_request(), "v1", limits.MAX_PRICE_KOBO, details="d" * 500, prep_minutes=600)
    req, _ = place(req, "v2", 1, prep_minutes=1)
    assert [o.status for o in req.offers.values()] == ["PENDING", "PENDING"]
    assert [o.price_kobo for o in req.offers.values()] == [limits.MAX_PRICE_KOBO, 1]
    assert limits.MAX_PRICE_KOBO == 2 * limits.MAX_BUDGET_KOBO == 100_000_000


def test_place_offer_refusals() -> None:
    req = new_request(max_vendor_offers=2)
    assert_refused(req, lambda: place(req, "v1", 1, vendor_verified=False), "forbidden")
    assert_refused(req, lambda: place(req, "v1", 1, vendor_lat=req.delivery_lat + 1.0), "forbidden")
    req, _ = place(req, "v1", 300_000)
    assert_refused(req, lambda: place(req, "v1", 290_000, offer_id="other"), "conflict")
    assert_refused(req, lambda: place(req, "v2", 290_000, offer_id="off-v1-0"), "conflict")
    req, _ = place(req, "v2", 310_000)
    assert_refused(req, lambda: place(req, "v3", 305_000), "limit_reached")
    assert_refused(req, lambda: place(req, "v3", 305_000, at=req.expires_at), "expired")
    req, _ = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    assert_refused(req, lambda: place(req, "v3", 305_000), "conflict")


def test_place_offer_total_offers_are_limited() -> None:
    req = new_request(max_vendor_offers=1)
    for i in range(limits.MAX_OFFERS_PER_REQUEST):
        req, _ = place(req, f"v{i}", 300_000)
        req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id=f"v{i}", offer_id=f"off-v{i}-{i}", now=T0))
    assert_refused(req, lambda: place(req, "late", 300_000), "limit_reached")


def test_place_offer_check_order() -> None:
    """Request state first (conflict, expired), then the vendor (forbidden), then the payload."""
    req = new_request()
    late = req.expires_at
    assert_refused(req, lambda: place(req, "v1", 0, at=late, vendor_verified=False), "expired")
    assert_refused(req, lambda: place(req, "v1", 0, vendor_verified=False), "forbidden")
    req, _ = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    assert_refused(req, lambda: place(req, "v1", 0, at=late, vendor_verified=False), "conflict")


# ---------------------------------------------------------------- competitiveness (median)


def test_single_offer_is_competitive() -> None:
    req, _ = place(new_request(), "v1", limits.MAX_PRICE_KOBO)
    assert flags(req) == {"v1": True}


def test_median_odd_count() -> None:
    req = place_all(new_request(), ("a", 300), ("b", 100), ("c", 200))
    assert flags(req) == {"a": False, "b": True, "c": True}


def test_median_even_count_uses_mean_of_middle_values() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 201), ("c", 200), ("d", 400))
    # middle values 200 and 201: median 200.5, so 201 is above it
    assert flags(req) == {"a": True, "b": False, "c": True, "d": False}


def test_median_even_count_at_exact_mean() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    assert flags(req) == {"a": True, "b": False}
    req, _ = place(req, "c", 200)  # median 200 exactly
    assert flags(req) == {"a": True, "b": False, "c": True}


def test_median_ties() -> None:
    req = place_all(new_request(), ("a", 500), ("b", 500), ("c", 500))
    assert flags(req) == {"a": True, "b": True, "c": True}
    req, _ = place(req, "d", 100)  # 100, 500, 500, 500: median 500, all still competitive
    assert flags(req) == {"a": True, "b": True, "c": True, "d": True}


def test_recompute_returns_only_stale_live_offers() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    assert n.recompute_competitive(req.offers) == []
    cheaper = {**req.offers, "off-b-1": dataclasses.replace(req.offers["off-b-1"], price_kobo=50)}
    before = dict(cheaper)
    assert {o.vendor_id for o in n.recompute_competitive(cheaper)} == {"a", "b"}
    assert cheaper == before  # reads only


def test_non_live_offers_keep_their_last_flag() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="b", offer_id="off-b-1", now=LATER))
    req, _ = place(req, "c", 1000)
    assert req.offers["off-b-1"].is_competitive is False
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="a", offer_id="off-a-0", now=LATER))
    assert req.offers["off-a-0"].is_competitive is True  # kept, though 100 < 1000 alone now
    assert req.offers["off-c-2"].is_competitive is True  # alone: competitive


def test_recompute_with_no_live_offers() -> None:
    assert n.recompute_competitive(new_request().offers) == []


# ---------------------------------------------------------------- revise_offer


def test_revise_offer_happy_path() -> None:
    req, _ = place(new_request(), "v1", 300_000, details="d", prep_minutes=20)
    cmd = ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=600_000, now=LATER)
    req, events = n.revise_offer(req, cmd)
    o = offer_of(req, "v1")
    assert (o.price_kobo, o.details, o.prep_minutes, o.over_budget) == (600_000, "d", 20, True)
    assert o.updated_at == LATER
    [e] = events
    assert e.kind == "offer:updated" and e.targets == (("room", "offer:updated"),)
    assert e.payload["offer"] == views.offer_view(o)
    check_seqs(req, events, 3)
    req, _ = n.revise_offer(
        req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=1, details="new", prep_minutes=5, now=LATER)
    )
    o = offer_of(req, "v1")
    assert (o.details, o.prep_minutes, o.over_budget) == ("new", 5, False)


def test_revise_answers_a_counter() -> None:
    req, _ = place(new_request(), "v1", 450_000)
    req, _ = n.counter_offer(req, CounterOffer(customer_id=CUSTOMER, offer_id="off-v1-0", price_kobo=350_000, now=T0))
    req, _ = n.revise_offer(req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=400_000, now=LATER))
    o = offer_of(req, "v1")
    assert (o.status, o.price_kobo, o.counter_price_kobo, o.round) == ("PENDING", 400_000, 350_000, 1)


def test_revise_flips_others_but_not_itself_as_separate_event() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, events = n.revise_offer(req, ReviseOffer(offer_id="off-b-1", vendor_id="b", price_kobo=50, now=LATER))
    assert [(e.kind, e.payload["offer"]["vendorId"]) for e in events] == [
        ("offer:updated", "b"),
        ("offer:updated", "a"),
    ]
    assert events[0].payload["offer"]["isCompetitive"] is True
    assert events[1].payload["offer"]["isCompetitive"] is False
    assert targets(events[1]) == {("room", "offer:updated"), ("vendor:a", "offer:updated")}
    check_seqs(req, events, 4)
    assert req.offers["off-a-0"].updated_at == req.offers["off-b-1"].updated_at == LATER


def test_revise_refusals() -> None:
    req, _ = place(new_request(), "v1", 300_000)

    def revise(
        vendor: str = "v1", offer: str = "off-v1-0", price: Any = 200_000, at: datetime = T0, **kw: Any
    ) -> tuple[MealRequest, list[Event]]:
        cmd = ReviseOffer(offer_id=offer, vendor_id=vendor, price_kobo=price, now=at, **kw)
        return n.revise_offer(req, cmd)

    assert_refused(req, lambda: revise(offer="nope"), "not_found")
    assert_refused(req, lambda: revise(vendor="v2"), "forbidden")
    assert_refused(req, lambda: revise(at=req.expires_at), "expired")
    assert_refused(req, lambda: revise(price=0), "invalid")
    assert_refused(req, lambda: revise(details="d" * 501), "invalid")
    assert_refused(req, lambda: revise(prep_minutes=601), "invalid")
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="v1", offer_id="off-v1-0", now=T0))
    assert_refused(req, revise, "conflict")
    req, _ = n.cancel_request(req, CancelRequest(customer_id=CUSTOMER, now=T0))
    assert_refused(req, revise, "conflict")


def test_revise_price_alone_is_checked_as_fully_as_with_other_fields() -> None:
    """A price-only revision skips building the field errors (the hot path) but refuses exactly
    what the full check refuses: not an int (bool included), out of range."""
    req, _ = place(new_request(), "v1", 300_000)

    def revise(price: Any, **kw: Any) -> tuple[MealRequest, list[Event]]:
        return n.revise_offer(req, ReviseOffer(offer_id="off-v1-0", vendor_id="v1", price_kobo=price, now=T0, **kw))

    for bad in (True, False, 0, -1, MAX_PRICE_KOBO + 1, 1.0, "300000", None):
        assert_refused(req, lambda bad=bad: revise(bad), "invalid")
        assert_refused(req, lambda bad=bad: revise(bad, details="ok"), "invalid")
    for good in (1, MAX_PRICE_KOBO):
        new, _ = revise(good)
        assert offer_of(new, "v1").price_kobo == good


# ---------------------------------------------------------------- withdraw_offer


def test_withdraw_offer_happy_path_with_flip() -> None:
    req = place_all(new_request(), ("a", 100), ("b", 300))
    req, events = n.withdraw_offer(req, WithdrawOffer(vendor_id="a", offer_id="off-a-0", now=LATER))
    assert req.offers["off-a-0"].status == "WITHDRAWN" and req.offers["off-a-0"].updated_at == LATER
    assert [e.kind for e in events] == ["offer:withdrawn", "offer:updated"]
    assert events[0].targets == (("room", "offer:withdrawn"),)
    assert events[1].payload["offer"]["vendorId"] == "b" and events[1].payload["offer"]["isCompetitive"]
    check_seqs(req, events, 4)


def test_withdraw_refusals() -> None:
    req, _ = place(new_request(), "v1", 300_000)

    def withdraw(vendor: str = "v1", offer: str = "off-v1-0", at: datetime = T0) -> tuple[MealRequest, list[Event]]:
        return n.withdraw_offer(req, WithdrawOffer(vendor_id=vendor, offer_id=offer, now=at))

    assert_refused(req, lambda: withdraw(offer="nope"), "not_found")
    assert_refused(req, lambda: withdraw(vendor="v2"), "forbidden")
    assert_refused(req, lambda: withdraw(at=req.expires_at), "expired")
    req, _ = withdraw()
    assert_refused(req, withdraw, "conflict")


# ---------------------------------------------------------------- purity


def negotiating() -> MealRequest:
    """A state every rule can act on: a pending offer (a), a countered one (b), a withdrawn one (c)."""
    req = place_all(new_request(), ("a", 300_000), ("b", 350_000), ("c", 400_000))
    req, _ = n.counter_offer(req, CounterOffer(customer_id=CUSTOMER, offer_id="off-b-1", price_kobo=320_000, now=T0))
    req, _ = n.withdraw_offer(req, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=T0))
    return req


# rule name -> (apply it, expected refusal code or None)
PURE_CASES: dict[str, tuple[Callable[[MealRequest], Any], str | None]] = {
    "place": (lambda r: place(r, "d", 250_000), None),
    "place refused": (lambda r: place(r, "a", 250_000, offer_id="again"), "conflict"),
    "revise": (
        lambda r: n.revise_offer(r, ReviseOffer(offer_id="off-a-0", vendor_id="a", price_kobo=500_000, now=LATER)),
        None,
    ),
    "revise refused": (
        lambda r: n.revise_offer(r, ReviseOffer(offer_id="off-a-0", vendor_id="b", price_kobo=1, now=LATER)),
        "forbidden",
    ),
    "withdraw": (lambda r: n.withdraw_offer(r, WithdrawOffer(vendor_id="a", offer_id="off-a-0", now=LATER)), None),
    "withdraw refused": (
        lambda r: n.withdraw_offer(r, WithdrawOffer(vendor_id="c", offer_id="off-c-2", now=LATER)),
        "conflict",
    ),
    "counter": (
        lambda r: n.counter_offer(r, CounterOffer(customer_id=CUSTOMER, offer_id="off-a-0", price_kobo=1, now=LATER)),
        None,
    ),
    "counter refused": (
        lambda r: n.counter_offer(r, CounterOffer(customer_id=CUSTOMER, offer_id="off-b-1", price_kobo=1, now=LATER)),
        "conflict",
    ),
    "accept counter": (
        lambda r: n.accept_counter(r, AcceptCounter(vendor_id="b", offer_id="off-b-1", now=LATER)),
        None,
    ),
    "accept counter refused": (
        lambda r: n.accept_counter(r, AcceptCounter(vendor_id="a", offer_id="off-a-0", now=LATER)),
        "conflict",
    ),
    "accept": (lambda r: accept(r, "off-a-0"), None),
    "accept refused": (lambda r: accept(r, "off-c-2"), "conflict"),
    "reject": (lambda r: n.reject_offer(r, RejectOffer(customer_id=CUSTOMER, offer_id="off-a-0", now=LATER)), None),
    "reject refused": (
        lambda r: n.reject_offer(r, RejectOffer(customer_id="x", offer_id="off-a-0", now=LATER)),
        "forbidden",
    ),
    "cancel": (lambda r: n.cancel_request(r, CancelRequest(customer_id=CUSTOMER, now=LATER)), None),
    "cancel refused": (lambda r: n.cancel_request(r, CancelRequest(customer_id="x", now=LATER)), "forbidden"),
    "expire": (lambda r: n.expire_request(r, r.expires_at), None),
}


@pytest.mark.parametrize("case", list(PURE_CASES))
def test_rules_leave_their_input_unchanged(case: str) -> None:
    apply, refusal = PURE_CASES[case]
    req = negotiating()
    if refusal is not None:
        with pytest.raises(DomainError) as info:
            unchanged(req, apply)
        assert info.value.code == refusal
        return
    new, events, *_ = unchanged(req, apply)
    assert events and new is not req and new.seq == req.seq + len(events)
    # Offers the rule did not touch are shared, not copied.
    touched = {e.payload["offer"]["id"] for e in events if "offer" in e.payload}
    assert all(new.offers[k] is o for k, o in req.offers.items() if k not in touched)


def test_expire_too_early_returns_the_same_state() -> None:
    req = negotiating()
    new, events = unchanged(req, lambda r: n.expire_request(r, r.expires_at - timedelta(seconds=1)))
    assert new is req and events == []


# ---------------------------------------------------------------- who may view a request


def may_view(**kw: Any) -> bool:
    args: dict[str, Any] = dict(
        status="OPEN",
        delivery_lat=6.5244,
        delivery_lng=3.3792,
        has_offer=False,
        vendor_verified=True,
        vendor_lat=6.5244,
        vendor_lng=3.3792,
        vendor_km=5.0,
    )
    args.update(kw)
    return views.vendor_may_view(**args)


def test_vendor_may_view_an_open_request_it_could_bid_on() -> None:
    assert may_view()
    assert may_view(vendor_lat=6.5244 + 0.04)  # ~4.4 km north, radius 5 km
    assert not may_view(vendor_lat=6.5244 + 0.05)  # ~5.6 km
    assert may_view(vendor_lat=0.0, vendor_lng=0.0, delivery_lat=1.0, delivery_lng=0.0, vendor_km=111.3)
    assert not may_view(vendor_verified=False)
    for status in ("ACCEPTED", "CANCELLED", "EXPIRED"):
        assert not may_view(status=status)


def test_vendor_may_always_view_a_request_it_bid_on() -> None:
    for status in ("OPEN", "ACCEPTED", "CANCELLED", "EXPIRED"):
        assert may_view(status=status, has_offer=True, vendor_verified=False, vendor_lat=-60.0, vendor_km=0.0)
