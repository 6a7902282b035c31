"""Pure negotiation rules for one meal request (the domain model the request actor wraps).

Each rule takes the request state and a command and returns the new state and the events
to publish, or raises `DomainError`. State is immutable (frozen dataclasses; a request's
`offers` dict is never changed once the request is built: a rule that changes offers
builds a new dict), so a rule cannot half-apply a command and the caller may keep the old
state if it cannot store the new one. The rules never read the clock nor make ids: both
come in the command, so actors replay and tests stay deterministic. No I/O; stdlib and
engine's own modules only. Bounds live in engine.limits.

Every event takes the request's next `seq` (no gaps). After creation every event has a
"room" target, so a watcher replaying with `sinceSeq` sees a gap-free sequence (hence the
room also hears `request:closed` on expiry, right after `request:expired`).

The statuses live in engine.negotiation_statuses and the client views the events carry in
engine.negotiation_views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.errors import DomainError
from engine.fields import int_error, invalid, text_error
from engine.geometry import covers
from engine.limits import (
    ADDRESS_MAX_LENGTH,
    CATEGORY_MAX_LENGTH,
    DESIRED_AT_GRACE,
    DETAILS_MAX_LENGTH,
    EXPIRES_IN_MINUTES_DEFAULT,
    EXPIRES_IN_MINUTES_MAX,
    EXPIRES_IN_MINUTES_MIN,
    MAX_BUDGET_KOBO,
    MAX_COUNTER_ROUNDS,
    MAX_OFFERS_PER_REQUEST,
    MAX_PRICE_KOBO,
    MAX_VENDOR_OFFERS_DEFAULT,
    MAX_VENDOR_OFFERS_MAX,
    MAX_VENDOR_OFFERS_MIN,
    MESSAGE_MAX_LENGTH,
    NOTES_MAX_LENGTH,
    PREP_MINUTES_MAX,
    PREP_MINUTES_MIN,
)
from engine.negotiation_statuses import (
    ACCEPTED,
    CANCELLED,
    COUNTERED,
    EXPIRED,
    LIVE,
    OPEN,
    PENDING,
    REJECTED,
    WITHDRAWN,
)
from engine.negotiation_views import offer_view, request_view  # by name: hot path, one global lookup
from engine.state import evolve

ROOM, NEARBY = "room", "nearby"

Target = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Offer:
    """One bid. Frozen: a rule that changes it makes a copy (`engine.state.evolve`)."""

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


@dataclass(frozen=True, slots=True)
class MealRequest:
    """One request and its offers: the state a rule takes and returns, never changes in place."""

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
    offers: dict[str, Offer] = field(default_factory=dict)  # insertion ordered; never changed once built
    accepted_offer_id: str | None = None
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
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
    expires_in_minutes: int = EXPIRES_IN_MINUTES_DEFAULT
    time_scale: float = 1.0  # < 1 shortens lifetimes (tests and demos; POCHO_EXPIRY_SCALE)
    max_vendor_offers: int = MAX_VENDOR_OFFERS_DEFAULT


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


# ---------------------------------------------------------------- who may act on what


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


def _emit(events: list[Event], base: int, kind: str, payload: dict[str, Any], *targets: Target) -> None:
    """Append a command's next event: its seqs run on from `base`, the request's seq before it."""
    seq = base + len(events) + 1
    payload["seq"] = seq
    events.append(Event(seq, kind, payload, targets))


def _vendor(offer: Offer) -> str:
    return f"vendor:{offer.vendor_id}"


def recompute_competitive(offers: Mapping[str, Offer]) -> list[Offer]:
    """The live offers whose flag is stale, i.e. must flip: competitive means priced at or
    below the live median. Reads only.

    Integer arithmetic: twice the median is the sum of the two middle prices (the same
    price twice for an odd count), so `2 * price <= a + b`. Non-live offers keep their flag.
    """
    live = [o for o in offers.values() if o.status in LIVE]
    if not live:
        return []
    prices = sorted(o.price_kobo for o in live)
    n = len(prices)
    twice_median = prices[(n - 1) // 2] + prices[n // 2]
    return [o for o in live if (2 * o.price_kobo <= twice_median) != o.is_competitive]


def _with_flips(
    req: MealRequest, offers: dict[str, Offer], subject: Offer, now: datetime, kind: str, *targets: Target
) -> tuple[MealRequest, list[Event]]:
    """Finish a command that changed `subject` (already in `offers`, the command's own new dict).

    Flips stale competitiveness flags, then emits the subject's event (carrying its fresh
    flag) and one `offer:updated` to the room and the vendor for every other live offer
    whose flag flipped with this change.
    """
    others = []
    for stale in recompute_competitive(offers):
        flipped = evolve(stale, is_competitive=not stale.is_competitive, updated_at=now)
        offers[flipped.id] = flipped
        if flipped.id == subject.id:
            subject = flipped
        else:
            others.append(flipped)
    events: list[Event] = []
    _emit(events, req.seq, kind, {"offer": offer_view(subject)}, *targets)
    for o in others:
        _emit(
            events,
            req.seq,
            "offer:updated",
            {"offer": offer_view(o)},
            (ROOM, "offer:updated"),
            (_vendor(o), "offer:updated"),
        )
    return evolve(req, offers=offers, seq=req.seq + len(events)), events


def _changed(req: MealRequest, offer: Offer) -> dict[str, Offer]:
    """A new offers dict with `offer` in its place (copy-on-write: `req.offers` stays as it was)."""
    offers = dict(req.offers)
    offers[offer.id] = offer
    return offers


# ---------------------------------------------------------------- rules


def create_request(cmd: CreateRequest) -> tuple[MealRequest, list[Event]]:
    lo, hi = cmd.budget_min_kobo, cmd.budget_max_kobo
    errors = {
        "budgetMinKobo": int_error(lo, 1, MAX_BUDGET_KOBO),
        "budgetMaxKobo": int_error(hi, 1, MAX_BUDGET_KOBO),
        "category": text_error(cmd.category, CATEGORY_MAX_LENGTH, required=True),
        "addressLine": text_error(cmd.address_line, ADDRESS_MAX_LENGTH, required=True),
        "notes": text_error(cmd.notes, NOTES_MAX_LENGTH, required=False),
        "expiresInMinutes": int_error(cmd.expires_in_minutes, EXPIRES_IN_MINUTES_MIN, EXPIRES_IN_MINUTES_MAX),
        "maxVendorOffers": int_error(cmd.max_vendor_offers, MAX_VENDOR_OFFERS_MIN, MAX_VENDOR_OFFERS_MAX),
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
    invalid(errors)
    req = MealRequest(
        id=cmd.request_id,
        customer_id=cmd.customer_id,
        category=cmd.category,
        budget_min_kobo=lo,
        budget_max_kobo=hi,
        delivery_lat=float(cmd.delivery_lat),
        delivery_lng=float(cmd.delivery_lng),
        address_line=cmd.address_line,
        notes=cmd.notes,
        desired_at=d,
        status=OPEN,
        expires_at=cmd.now + timedelta(minutes=cmd.expires_in_minutes) * cmd.time_scale,
        max_vendor_offers=cmd.max_vendor_offers,
        created_at=cmd.now,
        seq=1,  # the snapshot handed to the creator already carries the creation event's seq
    )
    event = Event(1, "request:new", {"request": request_view(req), "seq": 1}, ((NEARBY, "request:new"),))
    return req, [event]


def _offer_errors(price_kobo: object, details: str | None, prep_minutes: int | None) -> dict[str, str | None]:
    return {
        "priceKobo": int_error(price_kobo, 1, MAX_PRICE_KOBO),
        "details": text_error(details, DETAILS_MAX_LENGTH, required=False),
        "prepMinutes": None if prep_minutes is None else int_error(prep_minutes, PREP_MINUTES_MIN, PREP_MINUTES_MAX),
    }


def place_offer(req: MealRequest, cmd: PlaceOffer) -> tuple[MealRequest, list[Event]]:
    _check_open(req, cmd.now)
    if not cmd.vendor_verified:
        raise DomainError("forbidden", "vendor is not verified")
    if not covers(cmd.vendor_lat, cmd.vendor_lng, cmd.vendor_km, req.delivery_lat, req.delivery_lng):
        raise DomainError("forbidden", "delivery point is outside the vendor's service area")
    errors = _offer_errors(cmd.price_kobo, cmd.details, cmd.prep_minutes)
    errors["slotTo"] = (
        "must not be before slotFrom"
        if cmd.slot_from is not None and cmd.slot_to is not None and cmd.slot_to < cmd.slot_from
        else None
    )
    invalid(errors)
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
        id=cmd.offer_id,
        request_id=req.id,
        vendor_id=cmd.vendor_id,
        vendor_name=cmd.vendor_name,
        price_kobo=cmd.price_kobo,
        details=cmd.details,
        prep_minutes=cmd.prep_minutes,
        slot_from=cmd.slot_from,
        slot_to=cmd.slot_to,
        status=PENDING,
        counter_price_kobo=None,
        round=0,
        is_competitive=False,
        over_budget=cmd.price_kobo > req.budget_max_kobo,
        created_at=cmd.now,
        updated_at=cmd.now,
    )
    return _with_flips(req, _changed(req, offer), offer, cmd.now, "offer:new", (ROOM, "offer:new"))


def _plain_price(price_kobo: object) -> bool:
    """A revision that only sets a valid price (the common one): nothing else to check."""
    return type(price_kobo) is int and 1 <= price_kobo <= MAX_PRICE_KOBO


def revise_offer(req: MealRequest, cmd: ReviseOffer) -> tuple[MealRequest, list[Event]]:
    """The hot path: one offer copy, one dict copy, one request copy (plus any flipped offers)."""
    offer = _vendor_offer(req, cmd.offer_id, cmd.vendor_id, cmd.now)
    if cmd.details is not None or cmd.prep_minutes is not None or not _plain_price(cmd.price_kobo):
        invalid(_offer_errors(cmd.price_kobo, cmd.details, cmd.prep_minutes))
    revised = evolve(
        offer,
        price_kobo=cmd.price_kobo,
        over_budget=cmd.price_kobo > req.budget_max_kobo,
        details=offer.details if cmd.details is None else cmd.details,
        prep_minutes=offer.prep_minutes if cmd.prep_minutes is None else cmd.prep_minutes,
        status=PENDING,  # answers a pending counter; counter_price_kobo stays as history
        updated_at=cmd.now,
    )
    return _with_flips(req, _changed(req, revised), revised, cmd.now, "offer:updated", (ROOM, "offer:updated"))


def withdraw_offer(req: MealRequest, cmd: WithdrawOffer) -> tuple[MealRequest, list[Event]]:
    offer = _vendor_offer(req, cmd.offer_id, cmd.vendor_id, cmd.now)
    withdrawn = evolve(offer, status=WITHDRAWN, updated_at=cmd.now)
    return _with_flips(req, _changed(req, withdrawn), withdrawn, cmd.now, "offer:withdrawn", (ROOM, "offer:withdrawn"))


def counter_offer(req: MealRequest, cmd: CounterOffer) -> tuple[MealRequest, list[Event]]:
    offer = _customer_offer(req, cmd.offer_id, cmd.customer_id, cmd.now)
    if offer.status != PENDING:
        raise DomainError("conflict", "offer is already countered: waiting for the vendor")
    if offer.round >= MAX_COUNTER_ROUNDS:
        raise DomainError("limit_reached", f"at most {MAX_COUNTER_ROUNDS} counters per offer")
    invalid(
        {
            "priceKobo": int_error(cmd.price_kobo, 1, MAX_PRICE_KOBO),
            "message": text_error(cmd.message, MESSAGE_MAX_LENGTH, required=False),
        }
    )
    countered = evolve(
        offer, status=COUNTERED, counter_price_kobo=cmd.price_kobo, round=offer.round + 1, updated_at=cmd.now
    )
    payload: dict[str, Any] = {"offer": offer_view(countered)}
    if cmd.message is not None:
        payload["message"] = cmd.message
    # The price is unchanged, so competitiveness is too.
    events: list[Event] = []
    _emit(events, req.seq, "offer:countered", payload, (_vendor(offer), "offer:countered"), (ROOM, "offer:updated"))
    return evolve(req, offers=_changed(req, countered), seq=req.seq + 1), events


def accept_counter(req: MealRequest, cmd: AcceptCounter) -> tuple[MealRequest, list[Event]]:
    offer = _vendor_offer(req, cmd.offer_id, cmd.vendor_id, cmd.now)
    price = offer.counter_price_kobo
    if offer.status != COUNTERED or price is None:
        raise DomainError("conflict", "offer has no pending counter")
    agreed = evolve(
        offer, price_kobo=price, over_budget=price > req.budget_max_kobo, status=PENDING, updated_at=cmd.now
    )
    return _with_flips(req, _changed(req, agreed), agreed, cmd.now, "offer:updated", (ROOM, "offer:updated"))


def _close_live(
    req: MealRequest, offers: dict[str, Offer], events: list[Event], status: str, kind: str, now: datetime
) -> None:
    """End every live offer in the command's own `offers` copy (request closing): the vendor
    hears `kind`, the room an update."""
    for o in list(offers.values()):
        if o.status in LIVE:
            closed = evolve(o, status=status, updated_at=now)
            offers[o.id] = closed
            _emit(events, req.seq, kind, {"offer": offer_view(closed)}, (_vendor(o), kind), (ROOM, "offer:updated"))


def _closed(req: MealRequest, events: list[Event], reason: str, *targets: Target) -> None:
    _emit(events, req.seq, "request:closed", {"requestId": req.id, "reason": reason}, *targets)


def accept_offer(req: MealRequest, cmd: AcceptOffer) -> tuple[MealRequest, list[Event], NewOrder]:
    """Returns the new state, its events and the order the accepted offer becomes."""
    offer = _customer_offer(req, cmd.offer_id, cmd.customer_id, cmd.now)
    accepted = evolve(offer, status=ACCEPTED, updated_at=cmd.now)
    offers = _changed(req, accepted)
    order = NewOrder(
        id=cmd.order_id,
        request_id=req.id,
        offer_id=offer.id,
        customer_id=req.customer_id,
        vendor_id=offer.vendor_id,
        amount_kobo=offer.price_kobo,
        status="PENDING_PAYMENT",
        payment_status="PENDING",
        delivery_lat=req.delivery_lat,
        delivery_lng=req.delivery_lng,
        created_at=cmd.now,
    )
    events: list[Event] = []
    _emit(
        events,
        req.seq,
        "offer:accepted",
        {"offer": offer_view(accepted), "orderId": cmd.order_id},
        (_vendor(offer), "offer:accepted"),
        (ROOM, "offer:updated"),
    )
    _close_live(req, offers, events, REJECTED, "offer:rejected", cmd.now)
    _closed(req, events, "accepted", (NEARBY, "request:closed"), (ROOM, "request:closed"))
    new = evolve(
        req,
        status=ACCEPTED,
        accepted_offer_id=offer.id,
        order_id=cmd.order_id,
        offers=offers,
        seq=req.seq + len(events),
    )
    return new, events, order


def reject_offer(req: MealRequest, cmd: RejectOffer) -> tuple[MealRequest, list[Event]]:
    offer = _customer_offer(req, cmd.offer_id, cmd.customer_id, cmd.now)
    rejected = evolve(offer, status=REJECTED, updated_at=cmd.now)
    return _with_flips(
        req,
        _changed(req, rejected),
        rejected,
        cmd.now,
        "offer:rejected",
        (_vendor(offer), "offer:rejected"),
        (ROOM, "offer:updated"),
    )


def cancel_request(req: MealRequest, cmd: CancelRequest) -> tuple[MealRequest, list[Event]]:
    """Allowed while OPEN, even past expires_at if the expiry timer has not fired yet."""
    _check_owner(req, cmd.customer_id)
    if req.status != OPEN:
        raise DomainError("conflict", f"request is {req.status}")
    offers = dict(req.offers)
    events: list[Event] = []
    _close_live(req, offers, events, REJECTED, "offer:rejected", cmd.now)
    _closed(req, events, "cancelled", (NEARBY, "request:closed"), (ROOM, "request:closed"))
    return evolve(req, status=CANCELLED, offers=offers, seq=req.seq + len(events)), events


def expire_request(req: MealRequest, now: datetime) -> tuple[MealRequest, list[Event]]:
    """Idempotent: timers may fire late or twice, so a closed or not-yet-due request comes
    back as it is (the same object) with no events."""
    if req.status != OPEN or now < req.expires_at:
        return req, []
    offers = dict(req.offers)
    events: list[Event] = []
    _close_live(req, offers, events, EXPIRED, "offer:expired", now)
    _emit(events, req.seq, "request:expired", {"requestId": req.id}, (ROOM, "request:expired"))
    # The room hears request:closed too, so its replay has no gap at the end (see module doc).
    _closed(req, events, "expired", (NEARBY, "request:closed"), (ROOM, "request:closed"))
    return evolve(req, status=EXPIRED, offers=offers, seq=req.seq + len(events)), events
