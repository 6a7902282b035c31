"""Auto-bid rules: does a vendor's standing rule match a new request, and at what price.

A vendor opts in with one rule per category (minimum price = its floor, a radius around
itself). A rule matches a request of its category whose delivery point lies within the
radius and whose budget can pay the floor (the engine never bids over a budget the floor
already exceeds). The price is the ML service's suggestion raised to the floor and capped
at the largest offer price: never under the floor, whatever the service says. Without a
suggestion (service off, slow, failing) there is no automatic bid: the vendor still got
`request:new` and bids by hand, the behaviour before auto-bid.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.geometry import distance_km
from engine.limits import MAX_PRICE_KOBO


@dataclass(frozen=True, slots=True)
class Rule:
    vendor_id: str
    category: str
    min_price_kobo: int
    radius_km: float
    prep_minutes: int | None = None
    details: str | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """A new request as a rule sees it, from one vendor's position."""

    category: str
    budget_max_kobo: int
    delivery_lat: float
    delivery_lng: float
    vendor_lat: float
    vendor_lng: float


def same_category(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def match(rule: Rule, seen: Seen) -> float | None:
    """The vendor's distance to the delivery point (km) when `rule` matches, else None."""
    if not same_category(rule.category, seen.category) or seen.budget_max_kobo < rule.min_price_kobo:
        return None
    km = distance_km(seen.vendor_lat, seen.vendor_lng, seen.delivery_lat, seen.delivery_lng)
    return km if km <= rule.radius_km else None


def bid_price(rule: Rule, suggested_kobo: int | None) -> int | None:
    """The price to bid: the suggestion, at least the floor, at most MAX_PRICE_KOBO; None
    (no automatic bid) without a suggestion."""
    if suggested_kobo is None:
        return None
    return min(max(suggested_kobo, rule.min_price_kobo), MAX_PRICE_KOBO)
