"""Pure order rules: the order state machine, who may move it, its SLA checks and dispatch steps.

Like engine.negotiation: a rule takes the order and a command and returns the new order and
its events, or raises `DomainError` having changed nothing (state is frozen; `engine.state.evolve`
copies). The clock, the delivery code and rider search results come in the commands; no
I/O, no randomness. The one exception to "refused changes nothing" is a wrong delivery
code: it counts an attempt, so the rule raises `CodeRejected`, which carries the order with
the attempt counted (and, on the last allowed attempt, the ops event of the lock).

Who moves what (PROTOCOL statuses):

    payment   PENDING_PAYMENT -> CONFIRMED             (PaymentConfirmed, never a client)
    customer  PENDING_PAYMENT | CONFIRMED -> CANCELED   (before PREPARING)
    vendor    CONFIRMED -> PREPARING -> READY; CANCELED (with a reason) before pickup
    rider     READY -> PICKED_UP -> OUT_FOR_DELIVERY -> DELIVERED (with the delivery code);
              only the assigned rider
    system    PENDING_PAYMENT -> CANCELED when unpaid for `Policy.unpaid_cancel`

Order of checks in every rule: payload (`invalid`), caller (`forbidden`), state (`conflict`).

Events. `order:status` events take the order's next `seq` and go to the customer, the vendor
and the assigned rider (`CUSTOMER`, `VENDOR`, `RIDER` audiences); their payload is
{order, event} with the order as vendor and rider see it (no delivery code: the publisher
adds it for the customer, `with_code`). Events with seq 0 are outside the order's sequence
and never replayed: `assignment:offer` / `assignment:revoked` to one rider (`rider:<id>`),
`TELL` (a message for a rider actor) and `OPS` (an SLA breach or a locked code: an ops record,
an outbox notification and a metric).

SLA checks (durable: computed from stored timestamps; each fires once, `sla_fired`), all
scaled by `Policy.sla_scale`:
- prep_not_started: still CONFIRMED `prep_start` after confirmation;
- ready_late: not READY by confirmation + the promised prep minutes (the accepted offer's
  `prepMinutes`, else `DEFAULT_PREP_MINUTES`) + `ready_grace`. The issue's "READY longer
  than the promised prep time" read as: reaching READY takes longer than promised;
  the vendor's own `etaMinutes` informs the customer but does not move this deadline;
- unassigned: no rider `unassigned` after confirmation (while the order is before pickup);
- delivery_late: not DELIVERED by pickup + the trip estimate (`trip_minutes`) + `delivery_margin`.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine import dispatch
from engine.assignment import AssignmentOffered, AssignmentWithdrawn, Carrying, Release, RiderCandidate
from engine.clock import iso
from engine.dispatch import Dispatch
from engine.errors import DomainError
from engine.geometry import distance_km
from engine.limits import (
    DELIVERY_CODE_LENGTH,
    MAX_CODE_ATTEMPTS,
    ORDER_ETA_MINUTES_MAX,
    ORDER_ETA_MINUTES_MIN,
    RATING_MAX,
    RATING_MIN,
    REASON_MAX_LENGTH,
    REVIEW_COMMENT_MAX_LENGTH,
)
from engine.negotiation import OrderView
from engine.state import evolve

# Statuses, in the only order an order moves through them (CANCELED aside).
PENDING_PAYMENT, CONFIRMED, PREPARING, READY = "PENDING_PAYMENT", "CONFIRMED", "PREPARING", "READY"
PICKED_UP, OUT_FOR_DELIVERY, DELIVERED, CANCELED = "PICKED_UP", "OUT_FOR_DELIVERY", "DELIVERED", "CANCELED"
FORWARD = (PENDING_PAYMENT, CONFIRMED, PREPARING, READY, PICKED_UP, OUT_FOR_DELIVERY, DELIVERED)
STATUSES = (*FORWARD, CANCELED)
RANK = {s: i for i, s in enumerate(FORWARD)}
TERMINAL = frozenset({DELIVERED, CANCELED})
BEFORE_PICKUP = frozenset({PENDING_PAYMENT, CONFIRMED, PREPARING, READY})
NEEDS_RIDER = frozenset({CONFIRMED, PREPARING, READY})  # paid, not yet picked up
VENDOR_TARGETS = frozenset({PREPARING, READY, CANCELED})
RIDER_TARGETS = frozenset({PICKED_UP, OUT_FOR_DELIVERY, DELIVERED})
PAID = "PAID"

# Audiences of order:status, and event kinds.
CUSTOMER, VENDOR, RIDER = "customer", "vendor", "rider"
ORDER_STATUS = "order:status"
ASSIGNMENT_OFFER, ASSIGNMENT_REVOKED = "assignment:offer", "assignment:revoked"
TELL = "tell"  # payload {"riderId", "message"}: an engine.assignment message for that rider's actor
OPS = "ops"

# SLA kinds (metric label `kind`) and the other ops record.
SLA_PREP_START, SLA_READY, SLA_UNASSIGNED, SLA_DELIVERY = (
    "prep_not_started",
    "ready_late",
    "unassigned",
    "delivery_late",
)
SLA_KINDS = (SLA_PREP_START, SLA_READY, SLA_UNASSIGNED, SLA_DELIVERY)
CODE_LOCKED = "code_locked"

DEFAULT_PREP_MINUTES = 30  # promised prep time when the accepted offer named none
RIDE_SPEED_KMH = 20.0  # city riding speed of the trip estimate
HANDOVER_MINUTES = 5  # parking, stairs, handing over: added to every trip estimate


@dataclass(frozen=True, slots=True)
class Policy:
    """Timings from the settings (README configuration table); rules take them as data."""

    unpaid_cancel: timedelta = timedelta(minutes=15)
    prep_start: timedelta = timedelta(minutes=10)
    ready_grace: timedelta = timedelta(minutes=10)
    unassigned: timedelta = timedelta(minutes=10)
    delivery_margin: timedelta = timedelta(minutes=15)
    sla_scale: float = 1.0  # multiplies every SLA deadline (tests and demos)
    offer_ttl: timedelta = timedelta(seconds=30)
    dispatch_retry: timedelta = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class Order:
    """One order as its actor holds it: PROTOCOL's fields plus what the rules need."""

    id: str
    request_id: str
    offer_id: str
    customer_id: str
    vendor_id: str
    vendor_user_id: str
    vendor_name: str
    pickup_lat: float  # the vendor's location
    pickup_lng: float
    amount_kobo: int
    status: str
    payment_status: str
    delivery_lat: float
    delivery_lng: float
    created_at: datetime
    updated_at: datetime
    prep_minutes: int = DEFAULT_PREP_MINUTES  # promised with the accepted offer
    rider_id: str | None = None
    rider_user_id: str | None = None
    eta_minutes: int | None = None
    delivery_code: str | None = None
    code_attempts: int = 0
    confirmed_at: datetime | None = None
    picked_up_at: datetime | None = None
    seq: int = 0
    sla_fired: frozenset[str] = frozenset()
    rating: int | None = None
    dispatch: Dispatch = field(default_factory=Dispatch)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int  # 0: outside the order's sequence (dispatch, tells, ops)
    kind: str
    payload: dict[str, Any]
    targets: tuple[str, ...]  # audiences (order:status) or "rider:<id>" (assignment events)


class CodeRejected(DomainError):
    """A wrong delivery code: refused (`forbidden`), yet the attempt counts. `order` has the
    attempt counted and `events` the ops record when this attempt locked the code."""

    def __init__(self, order: Order, events: list[Event], message: str) -> None:
        super().__init__("forbidden", message)
        self.order = order
        self.events = events


def code_locked(order: Order) -> bool:
    return order.code_attempts >= MAX_CODE_ATTEMPTS


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentConfirmed:
    """A verified payment (the payments issue's webhooks; until then tests and ops). The
    delivery code is made at the edge (`secrets`) and handed in."""

    delivery_code: str
    now: datetime
    reference: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerCancel:
    customer_id: str
    reason: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorUpdate:
    vendor_id: str
    status: str
    now: datetime
    eta_minutes: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RiderUpdate:
    rider_id: str
    status: str
    now: datetime
    delivery_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptAssignment:
    rider_id: str
    rider_user_id: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclineAssignment:
    rider_id: str
    now: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    customer_id: str
    rating: int
    now: datetime
    comment: str | None = None


# ---------------------------------------------------------------- views


class CustomerOrderView(OrderView):
    """The customer's order: the only one that carries the delivery code (null until paid)."""

    deliveryCode: str | None


def order_view(order: Order) -> OrderView:
    return {
        "id": order.id,
        "requestId": order.request_id,
        "offerId": order.offer_id,
        "customerId": order.customer_id,
        "vendorId": order.vendor_id,
        "riderId": order.rider_id,
        "amountKobo": order.amount_kobo,
        "status": order.status,
        "paymentStatus": order.payment_status,
        "etaMinutes": order.eta_minutes,
        "deliveryLat": order.delivery_lat,
        "deliveryLng": order.delivery_lng,
        "createdAt": iso(order.created_at),
        "updatedAt": iso(order.updated_at),
        "seq": order.seq,
    }


def customer_view(order: Order) -> CustomerOrderView:
    return with_code(order_view(order), order.delivery_code)


def with_code(view: OrderView, code: str | None) -> CustomerOrderView:
    """A vendor/rider order view (live or stored) as the customer sees it. The code never
    changes once paid, so the current one is the one the view had."""
    return {**view, "deliveryCode": None if view["status"] == PENDING_PAYMENT else code}


def trip_km(order: Order) -> float:
    return distance_km(order.pickup_lat, order.pickup_lng, order.delivery_lat, order.delivery_lng)


def trip_minutes(order: Order) -> int:
    """Minutes from pickup to the door: the trip at city speed plus the handover."""
    return math.ceil(trip_km(order) / RIDE_SPEED_KMH * 60) + HANDOVER_MINUTES


def offer_payload(order: Order, expires_at: datetime) -> dict[str, Any]:
    """PROTOCOL's `assignment:offer`; `distanceKm` is the trip, pickup to drop-off."""
    km = trip_km(order)
    return {
        "orderId": order.id,
        "pickup": {"lat": order.pickup_lat, "lng": order.pickup_lng, "name": order.vendor_name},
        "dropoff": {"lat": order.delivery_lat, "lng": order.delivery_lng},
        "distanceKm": round(km, 2),
        "feeKobo": dispatch.delivery_fee_kobo(km),
        "expiresAt": iso(expires_at),
    }


# ---------------------------------------------------------------- deadlines


def unpaid_deadline(order: Order, policy: Policy) -> datetime:
    return order.created_at + policy.unpaid_cancel


def sla_deadlines(order: Order, policy: Policy) -> dict[str, datetime]:
    """The SLA checks that still apply to this order (status) and have not fired, by kind."""
    out: dict[str, datetime] = {}
    s, status, confirmed = policy.sla_scale, order.status, order.confirmed_at
    if confirmed is not None:
        if status == CONFIRMED:
            out[SLA_PREP_START] = confirmed + policy.prep_start * s
        if status in (CONFIRMED, PREPARING):
            out[SLA_READY] = confirmed + (timedelta(minutes=order.prep_minutes) + policy.ready_grace) * s
        if status in NEEDS_RIDER and order.rider_id is None:
            out[SLA_UNASSIGNED] = confirmed + policy.unassigned * s
    if order.picked_up_at is not None and status in (PICKED_UP, OUT_FOR_DELIVERY):
        out[SLA_DELIVERY] = order.picked_up_at + (timedelta(minutes=trip_minutes(order)) + policy.delivery_margin) * s
    return {k: v for k, v in out.items() if k not in order.sla_fired}


def next_deadline(order: Order, policy: Policy) -> datetime | None:
    """When the order needs its actor next (timer, and the sweeper's `sla_due_at`)."""
    if order.status in TERMINAL:
        return None
    due = list(sla_deadlines(order, policy).values())
    if order.status == PENDING_PAYMENT:
        due.append(unpaid_deadline(order, policy))
    if (d := dispatch.next_due(order.dispatch)) is not None:
        due.append(d)
    elif _lost_dispatch(order):
        due.append(order.confirmed_at or order.updated_at)
    return min(due, default=None)


def _lost_dispatch(order: Order) -> bool:
    """Needs a rider yet no search is planned (state stored before dispatch existed, or
    written by hand): the timer's rule restarts the search."""
    d = order.dispatch
    return order.status in NEEDS_RIDER and order.rider_id is None and dispatch.next_due(d) is None


# ---------------------------------------------------------------- helpers


def _text_error(v: object, hi: int, *, required: bool) -> str | None:
    if v is None:
        return "required" if required else None
    if not isinstance(v, str):
        return "must be a string"
    if required and not v.strip():
        return "must not be empty"
    if "\x00" in v:
        return "must not contain NUL characters"
    return None if len(v) <= hi else f"must be at most {hi} characters"


def _int_error(v: object, lo: int, hi: int) -> str | None:
    if not isinstance(v, int) or isinstance(v, bool):
        return "must be an integer"
    return None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _invalid(errors: dict[str, str | None]) -> None:
    bad = {k: v for k, v in errors.items() if v is not None}
    if bad:
        raise DomainError("invalid", "invalid payload: " + ", ".join(bad), bad)


def _conflict(order: Order, what: str) -> DomainError:
    return DomainError("conflict", f"order is {order.status}: {what}")


def _tell(rider_id: str, message: object) -> Event:
    return Event(0, TELL, {"riderId": rider_id, "message": message}, ())


def _revoke(order: Order, rider_id: str) -> list[Event]:
    """Withdraw an offer: the rider's sockets hear `assignment:revoked`, its actor forgets it."""
    return [
        Event(0, ASSIGNMENT_REVOKED, {"orderId": order.id}, (f"rider:{rider_id}",)),
        _tell(rider_id, AssignmentWithdrawn(order.id)),
    ]


def _advance(
    order: Order, now: datetime, by: str, kind: str = "status", extra: dict[str, Any] | None = None, **changes: Any
) -> tuple[Order, Event]:
    """The order with `changes` and its next seq, and the `order:status` event saying so."""
    new = evolve(order, seq=order.seq + 1, updated_at=now, **changes)
    body: dict[str, Any] = {"seq": new.seq, "kind": kind, "status": new.status}
    if new.status != order.status:
        body["previousStatus"] = order.status
    body["by"] = by
    body.update(extra or {})
    body["at"] = iso(now)
    targets = (CUSTOMER, VENDOR, RIDER) if new.rider_id is not None else (CUSTOMER, VENDOR)
    return new, Event(new.seq, ORDER_STATUS, {"order": order_view(new), "event": body}, targets)


def _cancel(order: Order, now: datetime, by: str, reason: str) -> tuple[Order, list[Event]]:
    """CANCELED from any status before pickup: withdraw an open offer, free an assigned rider."""
    internal: list[Event] = []
    d = order.dispatch
    if d.offered_rider_id is not None:
        internal += _revoke(order, d.offered_rider_id)
    if order.rider_id is not None:
        internal.append(_tell(order.rider_id, Release(order.id)))
    new, event = _advance(
        order, now, by, extra={"reason": reason}, status=CANCELED, eta_minutes=None, dispatch=dispatch.stop(d)
    )
    return new, [event, *internal]


def _ops(order: Order, kind: str, now: datetime, notify_user_id: str | None, body: str, **details: Any) -> Event:
    """An ops record (admin API), its outbox notification and metric; never sent to clients."""
    payload = {
        "kind": kind,
        "orderId": order.id,
        "status": order.status,
        "at": iso(now),
        "notifyUserId": notify_user_id,
        "body": body,
        **details,
    }
    return Event(0, OPS, payload, ())


# ---------------------------------------------------------------- rules: payment and customer


def confirm_payment(order: Order, cmd: PaymentConfirmed) -> tuple[Order, list[Event]]:
    """PENDING_PAYMENT -> CONFIRMED; dispatch starts searching at once."""
    code = cmd.delivery_code
    ok_code = isinstance(code, str) and len(code) == DELIVERY_CODE_LENGTH and code.isdigit() and code.isascii()
    _invalid({"deliveryCode": None if ok_code else f"must be {DELIVERY_CODE_LENGTH} digits"})
    if order.status != PENDING_PAYMENT:
        raise _conflict(order, "only an unpaid order can be confirmed")
    extra = {"reference": cmd.reference} if cmd.reference else None
    new, event = _advance(
        order,
        cmd.now,
        "payment",
        extra=extra,
        status=CONFIRMED,
        payment_status=PAID,
        confirmed_at=cmd.now,
        delivery_code=code,
        eta_minutes=order.prep_minutes,
        dispatch=dispatch.start(order.dispatch, cmd.now),
    )
    return new, [event]


def cancel_by_customer(order: Order, cmd: CustomerCancel) -> tuple[Order, list[Event]]:
    _invalid({"reason": _text_error(cmd.reason, REASON_MAX_LENGTH, required=True)})
    if cmd.customer_id != order.customer_id:
        raise DomainError("forbidden", "not your order")
    if order.status not in (PENDING_PAYMENT, CONFIRMED):
        raise _conflict(order, "the customer may cancel only before preparation starts")
    return _cancel(order, cmd.now, CUSTOMER, cmd.reason)


def rate(order: Order, cmd: Rate) -> tuple[Order, list[Event]]:
    """Once per DELIVERED order, by its customer; the store writes the review and the vendor's
    new average in the same transaction."""
    _invalid(
        {
            "rating": _int_error(cmd.rating, RATING_MIN, RATING_MAX),
            "comment": _text_error(cmd.comment, REVIEW_COMMENT_MAX_LENGTH, required=False),
        }
    )
    if cmd.customer_id != order.customer_id:
        raise DomainError("forbidden", "not your order")
    if order.status != DELIVERED:
        raise _conflict(order, "only a delivered order can be rated")
    if order.rating is not None:
        raise DomainError("conflict", "this order is already rated")
    extra = {"rating": cmd.rating, "comment": cmd.comment}
    new, event = _advance(order, cmd.now, CUSTOMER, "rated", extra=extra, rating=cmd.rating)
    return new, [event]


# ---------------------------------------------------------------- rules: vendor


def vendor_update(order: Order, cmd: VendorUpdate) -> tuple[Order, list[Event]]:
    status = cmd.status
    _invalid(
        {
            "status": None if status in VENDOR_TARGETS else "must be PREPARING, READY or CANCELED",
            "etaMinutes": None
            if cmd.eta_minutes is None
            else _int_error(cmd.eta_minutes, ORDER_ETA_MINUTES_MIN, ORDER_ETA_MINUTES_MAX),
            "reason": _text_error(cmd.reason, REASON_MAX_LENGTH, required=status == CANCELED),
        }
    )
    if cmd.vendor_id != order.vendor_id:
        raise DomainError("forbidden", "not your order")
    if status == CANCELED:
        if order.status not in BEFORE_PICKUP:
            raise _conflict(order, "the vendor may cancel only before pickup")
        assert cmd.reason is not None
        return _cancel(order, cmd.now, VENDOR, cmd.reason)
    if status == PREPARING:
        if order.status != CONFIRMED:
            raise _conflict(order, "PREPARING follows CONFIRMED")
        eta = order.eta_minutes if cmd.eta_minutes is None else cmd.eta_minutes
        new, event = _advance(order, cmd.now, VENDOR, status=PREPARING, eta_minutes=eta)
        return new, [event]
    if order.status != PREPARING:
        raise _conflict(order, "READY follows PREPARING")
    new, event = _advance(order, cmd.now, VENDOR, status=READY, eta_minutes=None)
    return new, [event]


# ---------------------------------------------------------------- rules: rider


def rider_update(order: Order, cmd: RiderUpdate) -> tuple[Order, list[Event]]:
    status = cmd.status
    _invalid(
        {
            "status": None if status in RIDER_TARGETS else "must be PICKED_UP, OUT_FOR_DELIVERY or DELIVERED",
            "deliveryCode": "required" if status == DELIVERED and cmd.delivery_code is None else None,
        }
    )
    if order.rider_id is None or cmd.rider_id != order.rider_id:
        raise DomainError("forbidden", "this order is not assigned to you")
    now = cmd.now
    if status == PICKED_UP:
        if order.status != READY:
            raise _conflict(order, "PICKED_UP follows READY")
        new, event = _advance(order, now, RIDER, status=PICKED_UP, picked_up_at=now, eta_minutes=trip_minutes(order))
        return new, [event]
    if status == OUT_FOR_DELIVERY:
        if order.status != PICKED_UP:
            raise _conflict(order, "OUT_FOR_DELIVERY follows PICKED_UP")
        picked = order.picked_up_at or now
        left = trip_minutes(order) - int((now - picked).total_seconds() // 60)
        new, event = _advance(order, now, RIDER, status=OUT_FOR_DELIVERY, eta_minutes=max(left, 1))
        return new, [event]
    if order.status != OUT_FOR_DELIVERY:
        raise _conflict(order, "DELIVERED follows OUT_FOR_DELIVERY")
    if code_locked(order):
        raise DomainError(
            "forbidden",
            f"the delivery code is locked after {MAX_CODE_ATTEMPTS} wrong attempts; support will resolve the delivery",
        )
    given = cmd.delivery_code or ""
    if not hmac.compare_digest(given.encode(), (order.delivery_code or "").encode()):
        attempts = order.code_attempts + 1
        counted = evolve(order, code_attempts=attempts, updated_at=now)
        if attempts >= MAX_CODE_ATTEMPTS:
            ops = _ops(counted, CODE_LOCKED, now, None, f"Order {order.id}: delivery code locked", attempts=attempts)
            raise CodeRejected(counted, [ops], f"wrong delivery code; the code is now locked ({attempts} attempts)")
        left = MAX_CODE_ATTEMPTS - attempts
        raise CodeRejected(counted, [], f"wrong delivery code; {left} attempt(s) left")
    new, event = _advance(order, now, RIDER, status=DELIVERED, eta_minutes=None)
    return new, [event, _tell(order.rider_id, Release(order.id))]


# ---------------------------------------------------------------- rules: dispatch


def accept_assignment(order: Order, cmd: AcceptAssignment) -> tuple[Order, list[Event]]:
    """The offered rider takes the order (the service has reserved the rider already).
    Accepting again as the assigned rider changes nothing and succeeds (a retry)."""
    if order.rider_id == cmd.rider_id:
        return order, []
    d = order.dispatch
    if order.rider_id is not None or order.status not in NEEDS_RIDER:
        raise _conflict(order, "the order no longer needs a rider")
    if d.offered_rider_id != cmd.rider_id or dispatch.offer_expired(d, cmd.now):
        raise DomainError("conflict", "no open offer of this order for you (revoked, expired or taken)")
    new, event = _advance(
        order,
        cmd.now,
        RIDER,
        "rider_assigned",
        extra={"riderId": cmd.rider_id},
        rider_id=cmd.rider_id,
        rider_user_id=cmd.rider_user_id,
        dispatch=dispatch.stop(d),
    )
    carrying = Carrying(order.id, order.delivery_lat, order.delivery_lng)
    return new, [event, _tell(cmd.rider_id, carrying)]


def decline_assignment(order: Order, cmd: DeclineAssignment) -> tuple[Order, list[Event]]:
    d = order.dispatch
    if d.offered_rider_id != cmd.rider_id:
        raise DomainError("conflict", "no open offer of this order for you (revoked, expired or taken)")
    new = evolve(order, dispatch=dispatch.skip(d, cmd.rider_id, cmd.now))
    return new, [_tell(cmd.rider_id, AssignmentWithdrawn(order.id))]


def rider_unavailable(order: Order, rider_id: str, now: datetime) -> tuple[Order, list[Event]]:
    """The offered rider went offline: skip it and search again. Idempotent: anything else
    (an old offer, the assigned rider) changes nothing."""
    d = order.dispatch
    if d.offered_rider_id != rider_id:
        return order, []
    return evolve(order, dispatch=dispatch.skip(d, rider_id, now)), _revoke(order, rider_id)


def offer_next(
    order: Order, candidates: Sequence[RiderCandidate], now: datetime, policy: Policy
) -> tuple[Order, list[Event]]:
    """After a search (`dispatch.search_due`): offer the nearest eligible candidate, or plan
    the next search. `candidates` are those of the first radius that had an eligible one."""
    d = order.dispatch
    if order.status not in NEEDS_RIDER or order.rider_id is not None or not dispatch.search_due(d, now):
        return order, []
    chosen = dispatch.pick(candidates, d)
    if chosen is None:
        return evolve(order, dispatch=dispatch.nobody(d, now, policy.dispatch_retry)), []
    offered = dispatch.offer(d, chosen.rider_id, now, policy.offer_ttl)
    expires = offered.offer_expires_at
    assert expires is not None
    new = evolve(order, dispatch=offered)
    return new, [
        Event(0, ASSIGNMENT_OFFER, offer_payload(order, expires), (f"rider:{chosen.rider_id}",)),
        _tell(chosen.rider_id, AssignmentOffered(order.id, expires)),
    ]


# ---------------------------------------------------------------- rules: time


_SLA_TEXT = {
    SLA_PREP_START: "is paid but preparation has not started",
    SLA_READY: "is not ready within the promised prep time",
    SLA_UNASSIGNED: "has no rider yet",
    SLA_DELIVERY: "is running late for delivery",
}


def _sla_notify(order: Order, kind: str) -> str | None:
    """Who the breach's notification goes to: the vendor for kitchen delays, the customer for
    a late delivery, ops (None) for a missing rider."""
    if kind in (SLA_PREP_START, SLA_READY):
        return order.vendor_user_id
    if kind == SLA_DELIVERY:
        return order.customer_id
    return None


def due(order: Order, now: datetime, policy: Policy) -> tuple[Order, list[Event]]:
    """The timer's rule: cancel an unpaid order, expire an unanswered offer, record SLA
    breaches. Idempotent: what is not due (yet, or any more) changes nothing."""
    if order.status in TERMINAL:
        return order, []
    if order.status == PENDING_PAYMENT:
        if now < unpaid_deadline(order, policy):
            return order, []
        return _cancel(order, now, "system", "unpaid")
    new, events = order, []
    d = order.dispatch
    if _lost_dispatch(order):
        new = evolve(new, dispatch=dispatch.start(d, now))
    if dispatch.offer_expired(d, now) and d.offered_rider_id is not None:
        new = evolve(new, dispatch=dispatch.skip(d, d.offered_rider_id, now))
        events += _revoke(order, d.offered_rider_id)
    fired = [kind for kind, at in sla_deadlines(new, policy).items() if now >= at]
    for kind in fired:
        text = f"Order {order.id[:8]} {_SLA_TEXT[kind]}"
        events.append(_ops(new, f"sla:{kind}", now, _sla_notify(new, kind), text, sla=kind))
    if fired:
        new = evolve(new, sla_fired=new.sla_fired | frozenset(fired))
    return new, events


# ---------------------------------------------------------------- rules: money after confirmation (payments, issue 8)

# What the payments service may tell an order about its money once the order was paid or
# cancelled: paid after the cancel, refunds under way or done, or paid again (a refund failed).
PAYMENT_NOTES = ("PAID", "PAID_AFTER_CANCEL", "REFUND_PENDING", "PARTIALLY_REFUNDED", "REFUNDED")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentNoted:
    """News from the payments service about this order's money (never a client command)."""

    payment_status: str
    now: datetime
    reference: str | None = None


def note_payment(order: Order, cmd: PaymentNoted) -> tuple[Order, list[Event]]:
    """Only `paymentStatus` changes, with an `order:status` event of kind `payment` (the order's
    status stays); the same news again changes nothing."""
    _invalid({"paymentStatus": None if cmd.payment_status in PAYMENT_NOTES else f"must be one of {PAYMENT_NOTES}"})
    if cmd.payment_status == order.payment_status:
        return order, []
    extra: dict[str, Any] = {"paymentStatus": cmd.payment_status}
    if cmd.reference:
        extra["reference"] = cmd.reference
    new, event = _advance(order, cmd.now, "payment", "payment", extra=extra, payment_status=cmd.payment_status)
    return new, [event]
