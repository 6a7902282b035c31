"""Builders and checks shared by the negotiation rule tests.

Rules return a new state and never change their input, so every helper that applies one
returns the new state too: tests thread it (`req, events = place(req, ...)`).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from engine import negotiation as n
from engine.errors import DomainError
from engine.negotiation import (
    AcceptOffer,
    CreateRequest,
    Event,
    MealRequest,
    PlaceOffer,
)

T = TypeVar("T")
T0 = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
CUSTOMER = "cust-1"

REQUEST_FIELDS = {
    "id",
    "customerId",
    "category",
    "budgetMinKobo",
    "budgetMaxKobo",
    "deliveryLat",
    "deliveryLng",
    "addressLine",
    "notes",
    "desiredAt",
    "status",
    "expiresAt",
    "maxVendorOffers",
    "offerCount",
    "createdAt",
    "seq",
}
OFFER_FIELDS = {
    "id",
    "requestId",
    "vendorId",
    "vendorName",
    "priceKobo",
    "details",
    "prepMinutes",
    "slotFrom",
    "slotTo",
    "status",
    "counterPriceKobo",
    "round",
    "isCompetitive",
    "overBudget",
    "createdAt",
    "updatedAt",
}
ORDER_FIELDS = {
    "id",
    "requestId",
    "offerId",
    "customerId",
    "vendorId",
    "riderId",
    "amountKobo",
    "status",
    "paymentStatus",
    "etaMinutes",
    "deliveryLat",
    "deliveryLng",
    "createdAt",
    "updatedAt",
    "seq",
}


def create_cmd(**kw: Any) -> CreateRequest:
    args: dict[str, Any] = dict(
        request_id="req-1",
        customer_id=CUSTOMER,
        category="jollof",
        budget_min_kobo=200_000,
        budget_max_kobo=500_000,
        delivery_lat=6.5244,
        delivery_lng=3.3792,
        address_line="12 Allen Avenue, Ikeja",
        now=T0,
    )
    args.update(kw)
    return CreateRequest(**args)


def new_request(**kw: Any) -> MealRequest:
    req, _ = n.create_request(create_cmd(**kw))
    return req


def place(req: MealRequest, vendor: str, price: int, at: datetime = T0, **kw: Any) -> tuple[MealRequest, list[Event]]:
    args: dict[str, Any] = dict(
        offer_id=f"off-{vendor}-{len(req.offers)}",
        vendor_id=vendor,
        vendor_name=f"Kitchen {vendor}",
        vendor_verified=True,
        vendor_lat=req.delivery_lat,
        vendor_lng=req.delivery_lng,
        vendor_km=5.0,
        price_kobo=price,
        now=at,
    )
    args.update(kw)
    return n.place_offer(req, PlaceOffer(**args))


def place_all(req: MealRequest, *bids: tuple[str, int]) -> MealRequest:
    """Place one offer per (vendor, price), in order; the state after the last."""
    for vendor, price in bids:
        req, _ = place(req, vendor, price)
    return req


def offer_of(req: MealRequest, vendor: str) -> n.Offer:
    return [o for o in req.offers.values() if o.vendor_id == vendor][-1]


def assert_refused(req: MealRequest, fn: Callable[[], object], code: str) -> DomainError:
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


def flags(req: MealRequest) -> dict[str, bool]:
    return {o.vendor_id: o.is_competitive for o in req.offers.values()}


def accept(
    req: MealRequest, offer: str, customer: str = CUSTOMER, at: datetime = LATER
) -> tuple[MealRequest, list[Event], n.NewOrder]:
    return n.accept_offer(req, AcceptOffer(customer_id=customer, offer_id=offer, order_id="ord-1", now=at))


def unchanged(req: MealRequest, fn: Callable[[MealRequest], T]) -> T:
    """Apply a rule to `req` and check it left `req`, its offers dict and every offer in it as
    they were, whether the rule succeeded or refused."""
    before = deepcopy(req)
    offers, offers_before = req.offers, dict(req.offers)
    try:
        return fn(req)
    finally:
        assert req == before
        assert req.offers is offers and offers == offers_before
        assert all(offers[k] is o for k, o in offers_before.items())
