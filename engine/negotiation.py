"""Pure negotiation rules for one meal request (the domain model the request actor wraps).

Each rule takes the request state and a command, validates everything first and raises
`DomainError` without touching the state, or mutates the state and returns the events to
publish. The rules never read the clock nor make ids: both come in the command, so actors
replay and tests stay deterministic. No I/O; stdlib and engine.errors only.

Every event takes the request's next `seq` (no gaps). After creation every event has a
"room" target, so a watcher replaying with `sinceSeq` sees a gap-free sequence (hence the
room also hears `request:closed` on expiry, right after `request:expired`).

`offerCount` in the request view counts offers that are live or ACCEPTED: withdrawn,
rejected and expired bids are history, not offers the customer can still take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from engine.clock import iso
from engine.errors import EngineError

MAX_BUDGET_KOBO = 50_000_000  # NGN 500k: the largest budget a customer may post.
MAX_PRICE_KOBO = MAX_BUDGET_KOBO * 2
MAX_COUNTER_ROUNDS = 3
MAX_OFFERS_PER_REQUEST = 60  # live or not: bounds place/withdraw churn on one request
DESIRED_AT_GRACE = timedelta(minutes=5)  # phone clocks drift; a slightly past desiredAt is fine

# Offer statuses
PENDING, COUNTERED, ACCEPTED = "PENDING", "COUNTERED", "ACCEPTED"
REJECTED, WITHDRAWN, EXPIRED = "REJECTED", "WITHDRAWN", "EXPIRED"
LIVE = frozenset({PENDING, COUNTERED})
# Request statuses (EXPIRED is shared with offers)
OPEN, CANCELLED = "OPEN", "CANCELLED"

ROOM, NEARBY = "room", "nearby"

Target = tuple[str, str]


class DomainError(EngineError):
    """A rule refused a command; `code` is one of PROTOCOL's ack error codes."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, details)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


@dataclass(slots=True)
class Offer:
    id: str
    request_id: str
    vendor_id: str
    vendor_name: str
    price_kobo: int
    details: str | None
    prep_minutes: int | None
    slot_from: datetime | None
    slot_to: datetime | None
    status: str
    counter_price_kobo: int | None
    round: int  # customer counters so far
    is_competitive: bool
    over_budget: bool
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class MealRequest:
    id: str
    customer_id: str
    category: str
    budget_min_kobo: int
    budget_max_kobo: int
    delivery_lat: float
    delivery_lng: float
    address_line: str
    notes: str | None
    desired_at: datetime | None
    status: str
    expires_at: datetime
    max_vendor_offers: int
    created_at: datetime
    seq: int = 0
    offers: dict[str, Offer] = field(default_factory=dict)  # insertion ordered
    accepted_offer_id: str | None = None
    order_id: str | None = None


@dataclass(slots=True)
class NewOrder:
    """The order an accepted offer becomes; the order actor takes it from here."""

    id: str
    request_id: str
    offer_id: str
    customer_id: str
    vendor_id: str
    amount_kobo: int
    status: str
    payment_status: str
    delivery_lat: float
    delivery_lng: float
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    kind: str
    payload: dict[str, Any]  # camelCase, JSON-ready, includes "seq"
    targets: tuple[Target, ...]  # (audience, socket event name)


# ---------------------------------------------------------------- commands

# Commands are keyword-only so call sites read like the socket payloads they come from.


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    request_id: str
    customer_id: str
    category: str
    budget_min_kobo: int
    budget_max_kobo: int
    delivery_lat: float
    delivery_lng: float
    address_line: str
    now: datetime
    notes: str | None = None
    desired_at: datetime | None = None
    expires_in_minutes: int = 15
    time_scale: float = 1.0  # < 1 shortens lifetimes (tests and demos; POCHO_EXPIRY_SCALE)
    max_vendor_offers: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOffer:
    offer_id: str
    vendor_id: str
    vendor_name: str
    vendor_verified: bool
    vendor_lat: float  # the vendor's own location and service radius decide coverage
    vendor_lng: float
    vendor_km: float
    price_kobo: int
    now: datetime
    details: str | None = None
    prep_minutes: int | None = None
    slot_from: datetime | None = None
    slot_to: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviseOffer:
    offer_id: str
    vendor_id: str
    price_kobo: int
    now: datetime
    details: str | None = None  # None keeps the current value
    prep_minutes: int | None = None  # None keeps the current value


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawOffer:
    vendor_id: str
    offer_id: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterOffer:
    customer_id: str
    offer_id: str
    price_kobo: int
    now: datetime
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptCounter:
    vendor_id: str
    offer_id: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptOffer:
    customer_id: str
    offer_id: str
    order_id: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectOffer:
    customer_id: str
    offer_id: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequest:
    customer_id: str
    now: datetime


# ---------------------------------------------------------------- views and geometry


def offer_count(req: MealRequest) -> int:
    """Offers that are live or accepted: withdrawn/rejected/expired bids no longer count."""
    return sum(1 for o in req.offers.values() if o.status in LIVE or o.status == ACCEPTED)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _fields(cls: type, skip: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, _camel(f.name)) for f in fields(cls) if f.name not in skip)


# PROTOCOL's objects are the dataclasses' fields in camelCase (tests pin the exact sets).
_REQUEST_FIELDS = _fields(MealRequest, ("offers", "accepted_offer_id", "order_id"))
_OFFER_FIELDS = _fields(Offer)
_ORDER_FIELDS = _fields(NewOrder)


def _view(obj: object, names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out = {}
    for name, key in names:
        value = getattr(obj, name)
        out[key] = iso(value) if isinstance(value, datetime) else value
    return out


def request_view(req: MealRequest) -> dict[str, Any]:
    view = _view(req, _REQUEST_FIELDS)
    view["offerCount"] = offer_count(req)
    return view


def offer_view(offer: Offer) -> dict[str, Any]:
    return _view(offer, _OFFER_FIELDS)


def order_view(order: NewOrder) -> dict[str, Any]:
    """PROTOCOL's order object at birth; the order actor starts the order's own seq later."""
    view = _view(order, _ORDER_FIELDS)
    view.update(riderId=None, etaMinutes=None, updatedAt=view["createdAt"], seq=0)
    return view


EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def covers(vendor_lat: float, vendor_lng: float, km_service_area: float, lat: float, lng: float) -> bool:
    return distance_km(vendor_lat, vendor_lng, lat, lng) <= km_service_area


# ---------------------------------------------------------------- validation helpers


def _int_error(v: object, lo: int, hi: int) -> str | None:
    if not isinstance(v, int) or isinstance(v, bool):  # bool is an int to Python, not to us
        return "must be an integer"
    return None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _text_error(v: object, lo: int, hi: int) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    if lo and not v.strip():
        return "must not be empty"
    if "\x00" in v:  # PostgreSQL text cannot hold NUL
        return "must not contain NUL characters"
    return None if len(v) <= hi else f"must be at most {hi} characters"


def _invalid(errors: dict[str, str | None]) -> None:
    bad = {k: v for k, v in errors.items() if v is not None}
    if bad:
        raise DomainError("invalid", "invalid payload: " + ", ".join(bad), bad)


def _check_open(req: MealRequest, now: datetime) -> None:
    if req.status != OPEN:
        raise DomainError("conflict", f"request is {req.status}")
    if now >= req.expires_at:
        raise DomainError("expired", "request has expired")


def _check_owner(req: MealRequest, customer_id: str) -> None:
    if req.customer_id != customer_id:
        raise DomainError("forbidden", "not your request")


def _get_offer(req: MealRequest, offer_id: str) -> Offer:
    offer = req.offers.get(offer_id)
    if offer is None:
        raise DomainError("not_found", "no such offer on this request")
    return offer


def _vendor_offer(req: MealRequest, offer_id: str, vendor_id: str, now: datetime) -> Offer:
    offer = _get_offer(req, offer_id)
    if offer.vendor_id != vendor_id:
        raise DomainError("forbidden", "not your offer")
    _check_open(req, now)
    _check_live(offer)
    return offer


def _customer_offer(req: MealRequest, offer_id: str, customer_id: str, now: datetime) -> Offer:
    _check_owner(req, customer_id)
    offer = _get_offer(req, offer_id)
    _check_open(req, now)
    _check_live(offer)
    return offer


def _check_live(offer: Offer) -> None:
    if offer.status not in LIVE:
        raise DomainError("conflict", f"offer is {offer.status}")


# ---------------------------------------------------------------- events and competitiveness


def _emit(req: MealRequest, kind: str, payload: dict[str, Any], *targets: Target) -> Event:
    req.seq += 1
    payload["seq"] = req.seq
    return Event(req.seq, kind, payload, targets)


def _vendor(offer: Offer) -> str:
    return f"vendor:{offer.vendor_id}"


def recompute_competitive(req: MealRequest) -> list[Offer]:
    """Flag live offers priced at or below the live median; return those whose flag flipped.

    Integer arithmetic: twice the median is the sum of the two middle prices (the same
    price twice for an odd count), so `2 * price <= a + b`. Non-live offers keep their flag.
    """
    live = [o for o in req.offers.values() if o.status in LIVE]
    if not live:
        return []
    prices = sorted(o.price_kobo for o in live)
    n = len(prices)
    twice_median = prices[(n - 1) // 2] + prices[n // 2]
    flipped = []
    for o in live:
        flag = 2 * o.price_kobo <= twice_median
        if flag != o.is_competitive:
            o.is_competitive = flag
            flipped.append(o)
    return flipped


def _with_flips(req: MealRequest, subject: Offer, now: datetime, kind: str, *targets: Target) -> list[Event]:
    """The subject's event (carrying its fresh flag), then one `offer:updated` to the room and
    the vendor for every other live offer whose competitiveness flipped with this change."""
    flipped = recompute_competitive(req)
    for o in flipped:
        o.updated_at = now
    events = [_emit(req, kind, {"offer": offer_view(subject)}, *targets)]
    for o in flipped:
        if o is not subject:
            events.append(_emit(req, "offer:updated", {"offer": offer_view(o)},
                                (ROOM, "offer:updated"), (_vendor(o), "offer:updated")))
    return events


# ---------------------------------------------------------------- rules


def create_request(cmd: CreateRequest) -> tuple[MealRequest, list[Event]]:
    lo, hi = cmd.budget_min_kobo, cmd.budget_max_kobo
    errors = {
        "budgetMinKobo": _int_error(lo, 1, MAX_BUDGET_KOBO),
        "budgetMaxKobo": _int_error(hi, 1, MAX_BUDGET_KOBO),
        "category": _text_error(cmd.category, 1, 64),
        "addressLine": _text_error(cmd.address_line, 1, 256),
        "notes": None if cmd.notes is None else _text_error(cmd.notes, 0, 1000),
        "expiresInMinutes": _int_error(cmd.expires_in_minutes, 1, 120),
        "maxVendorOffers": _int_error(cmd.max_vendor_offers, 1, 20),
    }
    if errors["budgetMinKobo"] is None and errors["budgetMaxKobo"] is None and lo > hi:
        errors["budgetMaxKobo"] = "must be at least budgetMinKobo"
    for name, value, limit in (("deliveryLat", cmd.delivery_lat, 90), ("deliveryLng", cmd.delivery_lng, 180)):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and -limit <= value <= limit
        errors[name] = None if ok else f"must be a number between -{limit} and {limit}"
    d = cmd.desired_at
    if d is not None:
        if not isinstance(d, datetime) or d.tzinfo is None:
            errors["desiredAt"] = "must be an aware UTC time"
        elif d < cmd.now - DESIRED_AT_GRACE:
            errors["desiredAt"] = "must not be in the past"
    _invalid(errors)
    req = MealRequest(
        id=cmd.request_id, customer_id=cmd.customer_id, category=cmd.category,
        budget_min_kobo=lo, budget_max_kobo=hi,
        delivery_lat=float(cmd.delivery_lat), delivery_lng=float(cmd.delivery_lng),
        address_line=cmd.address_line, notes=cmd.notes, desired_at=d, status=OPEN,
        expires_at=cmd.now + timedelta(minutes=cmd.expires_in_minutes) * cmd.time_scale,
        max_vendor_offers=cmd.max_vendor_offers, created_at=cmd.now,
    )
    req.seq = 1  # the snapshot handed to the creator already carries the creation event's seq
    event = Event(1, "request:new", {"request": request_view(req), "seq": 1}, ((NEARBY, "request:new"),))
    return req, [event]


def place_offer(req: MealRequest, cmd: PlaceOffer) -> list[Event]:
    _check_open(req, cmd.now)
    if not cmd.vendor_verified:
        raise DomainError("forbidden", "vendor is not verified")
    if not covers(cmd.vendor_lat, cmd.vendor_lng, cmd.vendor_km, req.delivery_lat, req.delivery_lng):
        raise DomainError("forbidden", "delivery point is outside the vendor's service area")
    _invalid({
        "priceKobo": _int_error(cmd.price_kobo, 1, MAX_PRICE_KOBO),
        "details": None if cmd.details is None else _text_error(cmd.details, 0, 500),
        "prepMinutes": None if cmd.prep_minutes is None else _int_error(cmd.prep_minutes, 1, 600),
        "slotTo": "must not be before slotFrom"
        if cmd.slot_from is not None and cmd.slot_to is not None and cmd.slot_to < cmd.slot_from else None,
    })
    if cmd.offer_id in req.offers:
        raise DomainError("conflict", "offer id already used")
    live = [o for o in req.offers.values() if o.status in LIVE]
    if any(o.vendor_id == cmd.vendor_id for o in live):
        raise DomainError("conflict", "vendor already has a live offer; revise it instead")
    if len(live) >= req.max_vendor_offers:
        raise DomainError("limit_reached", "request has the maximum number of live offers")
    if len(req.offers) >= MAX_OFFERS_PER_REQUEST:
        raise DomainError("limit_reached", "request has had the maximum number of offers")
    offer = Offer(
        id=cmd.offer_id, request_id=req.id, vendor_id=cmd.vendor_id, vendor_name=cmd.vendor_name,
        price_kobo=cmd.price_kobo, details=cmd.details, prep_minutes=cmd.prep_minutes,
        slot_from=cmd.slot_from, slot_to=cmd.slot_to, status=PENDING, counter_price_kobo=None,
        round=0, is_competitive=False, over_budget=cmd.price_kobo > req.budget_max_kobo,
        created_at=cmd.now, updated_at=cmd.now,
    )
    req.offers[offer.id] = offer
    return _with_flips(req, offer, cmd.now, "offer:new", (ROOM, "offer:new"))


def revise_offer(req: MealRequest, cmd: ReviseOffer) -> list[Event]:
    offer = _vendor_offer(req, cmd.offer_id, cmd.vendor_id, cmd.now)
    _invalid({
        "priceKobo": _int_error(cmd.price_kobo, 1, MAX_PRICE_KOBO),
        "details": None if cmd.details is None else _text_error(cmd.details, 0, 500),
        "prepMinutes": None if cmd.prep_minutes is None else _int_error(cmd.prep_minutes, 1, 600),
    })
    offer.price_kobo = cmd.price_kobo
    offer.over_budget = cmd.price_kobo > req.budget_max_kobo
    if cmd.details is not None:
        offer.details = cmd.details
    if cmd.prep_minutes is not None:
        offer.prep_minutes = cmd.prep_minutes
    offer.status = PENDING  # answers a pending counter; counter_price_kobo stays as history
    offer.updated_at = cmd.now
    return _with_flips(req, offer, cmd.now, "offer:updated", (ROOM, "offer:updated"))


def withdraw_offer(req: MealRequest, cmd: WithdrawOffer) -> list[Event]:
    offer = _vendor_offer(req, cmd.offer_id, cmd.vendor_id, cmd.now)
    offer.status = WITHDRAWN
    offer.updated_at = cmd.now
    return _with_flips(req, offer, cmd.now, "offer:withdrawn", (ROOM, "offer:withdrawn"))


def counter_offer(req: MealRequest, cmd: CounterOffer) -> list[Event]:
    offer = _customer_offer(req, cmd.offer_id, cmd.customer_id, cmd.now)
    if offer.status != PENDING:
        raise DomainError("conflict", "offer is already countered: waiting for the vendor")
    if offer.round >= MAX_COUNTER_ROUNDS:
        raise DomainError("limit_reached", f"at most {MAX_COUNTER_ROUNDS} counters per offer")
    _invalid({
        "priceKobo": _int_error(cmd.price_kobo, 1, MAX_PRICE_KOBO),
        "message": None if cmd.message is None else _text_error(cmd.message, 0, 500),
    })
    offer.status = COUNTERED
    offer.counter_price_kobo = cmd.price_kobo
    offer.round += 1
    offer.updated_at = cmd.now
    payload: dict[str, Any] = {"offer": offer_view(offer)}
    if cmd.message is not None:
        payload["message"] = cmd.message
    # The price is unchanged, so competitiveness is too.
    targets = ((_vendor(offer), "offer:countered"), (ROOM, "offer:updated"))
    return [_emit(req, "offer:countered", payload, *targets)]


def accept_counter(req: MealRequest, cmd: AcceptCounter) -> list[Event]:
    offer = _vendor_offer(req, cmd.offer_id, cmd.vendor_id, cmd.now)
    if offer.status != COUNTERED or offer.counter_price_kobo is None:
        raise DomainError("conflict", "offer has no pending counter")
    offer.price_kobo = offer.counter_price_kobo
    offer.over_budget = offer.price_kobo > req.budget_max_kobo
    offer.status = PENDING
    offer.updated_at = cmd.now
    return _with_flips(req, offer, cmd.now, "offer:updated", (ROOM, "offer:updated"))


def _close_live(req: MealRequest, status: str, kind: str, now: datetime) -> list[Event]:
    """End every live offer (request closing): the vendor hears `kind`, the room an update."""
    events = []
    for o in req.offers.values():
        if o.status in LIVE:
            o.status = status
            o.updated_at = now
            targets = ((_vendor(o), kind), (ROOM, "offer:updated"))
            events.append(_emit(req, kind, {"offer": offer_view(o)}, *targets))
    return events


def _closed(req: MealRequest, reason: str, *targets: Target) -> Event:
    return _emit(req, "request:closed", {"requestId": req.id, "reason": reason}, *targets)


def accept_offer(req: MealRequest, cmd: AcceptOffer) -> tuple[list[Event], NewOrder]:
    offer = _customer_offer(req, cmd.offer_id, cmd.customer_id, cmd.now)
    offer.status = ACCEPTED
    offer.updated_at = cmd.now
    req.status = ACCEPTED
    req.accepted_offer_id = offer.id
    req.order_id = cmd.order_id
    order = NewOrder(
        id=cmd.order_id, request_id=req.id, offer_id=offer.id, customer_id=req.customer_id,
        vendor_id=offer.vendor_id, amount_kobo=offer.price_kobo, status="PENDING_PAYMENT",
        payment_status="PENDING", delivery_lat=req.delivery_lat, delivery_lng=req.delivery_lng,
        created_at=cmd.now,
    )
    events = [_emit(req, "offer:accepted", {"offer": offer_view(offer), "orderId": cmd.order_id},
                    (_vendor(offer), "offer:accepted"), (ROOM, "offer:updated"))]
    events += _close_live(req, REJECTED, "offer:rejected", cmd.now)
    events.append(_closed(req, "accepted", (NEARBY, "request:closed"), (ROOM, "request:closed")))
    return events, order


def reject_offer(req: MealRequest, cmd: RejectOffer) -> list[Event]:
    offer = _customer_offer(req, cmd.offer_id, cmd.customer_id, cmd.now)
    offer.status = REJECTED
    offer.updated_at = cmd.now
    return _with_flips(
        req, offer, cmd.now, "offer:rejected", (_vendor(offer), "offer:rejected"), (ROOM, "offer:updated"))


def cancel_request(req: MealRequest, cmd: CancelRequest) -> list[Event]:
    """Allowed while OPEN, even past expires_at if the expiry timer has not fired yet."""
    _check_owner(req, cmd.customer_id)
    if req.status != OPEN:
        raise DomainError("conflict", f"request is {req.status}")
    req.status = CANCELLED
    events = _close_live(req, REJECTED, "offer:rejected", cmd.now)
    events.append(_closed(req, "cancelled", (NEARBY, "request:closed"), (ROOM, "request:closed")))
    return events


def expire_request(req: MealRequest, now: datetime) -> list[Event]:
    """Idempotent: timers may fire late or twice, so a closed or not-yet-due request is a no-op."""
    if req.status != OPEN or now < req.expires_at:
        return []
    req.status = EXPIRED
    events = _close_live(req, EXPIRED, "offer:expired", now)
    events.append(_emit(req, "request:expired", {"requestId": req.id}, (ROOM, "request:expired")))
    # The room hears request:closed too, so its replay has no gap at the end (see module doc).
    events.append(_closed(req, "expired", (NEARBY, "request:closed"), (ROOM, "request:closed")))
    return events
