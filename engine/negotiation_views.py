"""Client views of a meal request, its offers and the order it becomes, and who may see a request.

Shared by the rules (engine.negotiation: their events carry these views), the request actor,
and the server's stored-row views and HTTP handlers, which build them without running a rule.
Pure: no I/O.

`offerCount` in the request view counts offers that are live or ACCEPTED: withdrawn,
rejected and expired bids are history, not offers the customer can still take.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from engine.clock import iso
from engine.geometry import covers
from engine.negotiation_statuses import ACCEPTED, LIVE, OPEN

if TYPE_CHECKING:  # the rules import these views: a runtime import back would be a cycle
    from engine.negotiation import MealRequest, NewOrder, Offer


def offer_count(req: MealRequest) -> int:
    """Offers that are live or accepted: withdrawn/rejected/expired bids no longer count."""
    return sum(1 for o in req.offers.values() if o.status in LIVE or o.status == ACCEPTED)


class RequestView(TypedDict):
    """PROTOCOL's request object."""

    id: str
    customerId: str
    category: str
    budgetMinKobo: int
    budgetMaxKobo: int
    deliveryLat: float
    deliveryLng: float
    addressLine: str
    notes: str | None
    desiredAt: str | None
    status: str
    expiresAt: str | None
    maxVendorOffers: int
    createdAt: str | None
    seq: int
    offerCount: int


class OfferView(TypedDict):
    """PROTOCOL's offer object."""

    id: str
    requestId: str
    vendorId: str
    vendorName: str
    priceKobo: int
    details: str | None
    prepMinutes: int | None
    slotFrom: str | None
    slotTo: str | None
    status: str
    counterPriceKobo: int | None
    round: int
    isCompetitive: bool
    overBudget: bool
    createdAt: str | None
    updatedAt: str | None


class OrderView(TypedDict):
    """PROTOCOL's order object as the vendor and the rider see it (at birth here; the order
    actor owns it from then on, `engine.orders.order_view`)."""

    id: str
    requestId: str
    offerId: str
    customerId: str
    vendorId: str
    riderId: str | None
    amountKobo: int
    status: str
    paymentStatus: str
    etaMinutes: int | None
    deliveryLat: float
    deliveryLng: float
    createdAt: str | None
    updatedAt: str | None
    seq: int


def request_view(req: MealRequest) -> RequestView:
    return {
        "id": req.id,
        "customerId": req.customer_id,
        "category": req.category,
        "budgetMinKobo": req.budget_min_kobo,
        "budgetMaxKobo": req.budget_max_kobo,
        "deliveryLat": req.delivery_lat,
        "deliveryLng": req.delivery_lng,
        "addressLine": req.address_line,
        "notes": req.notes,
        "desiredAt": iso(req.desired_at),
        "status": req.status,
        "expiresAt": iso(req.expires_at),
        "maxVendorOffers": req.max_vendor_offers,
        "createdAt": iso(req.created_at),
        "seq": req.seq,
        "offerCount": offer_count(req),
    }


def offer_view(o: Offer) -> OfferView:
    return {
        "id": o.id,
        "requestId": o.request_id,
        "vendorId": o.vendor_id,
        "vendorName": o.vendor_name,
        "priceKobo": o.price_kobo,
        "details": o.details,
        "prepMinutes": o.prep_minutes,
        "slotFrom": iso(o.slot_from),
        "slotTo": iso(o.slot_to),
        "status": o.status,
        "counterPriceKobo": o.counter_price_kobo,
        "round": o.round,
        "isCompetitive": o.is_competitive,
        "overBudget": o.over_budget,
        "createdAt": iso(o.created_at),
        "updatedAt": iso(o.updated_at),
    }


def order_view(order: NewOrder) -> OrderView:
    created = iso(order.created_at)
    return {
        "id": order.id,
        "requestId": order.request_id,
        "offerId": order.offer_id,
        "customerId": order.customer_id,
        "vendorId": order.vendor_id,
        "riderId": None,
        "amountKobo": order.amount_kobo,
        "status": order.status,
        "paymentStatus": order.payment_status,
        "etaMinutes": None,
        "deliveryLat": order.delivery_lat,
        "deliveryLng": order.delivery_lng,
        "createdAt": created,
        "updatedAt": created,
        "seq": 0,
    }


def vendor_may_view(
    *,
    status: str,
    delivery_lat: float,
    delivery_lng: float,
    has_offer: bool,
    vendor_verified: bool,
    vendor_lat: float,
    vendor_lng: float,
    vendor_km: float,
) -> bool:
    """Whether a vendor may see a request (with its own offers on it): it has bid on it, or it
    could bid now (request OPEN, vendor verified, its service circle covers the delivery point).

    Plain values, so the actor (state in memory) and the HTTP handler (stored rows) share it.
    """
    if has_offer:
        return True
    return status == OPEN and vendor_verified and covers(vendor_lat, vendor_lng, vendor_km, delivery_lat, delivery_lng)
