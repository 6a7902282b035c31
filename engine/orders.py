"""What an order is: its statuses, its state (`Order`), the policy and commands the rules take,
the events they return, and what is read off an order without changing it (each party's view,
the rider's offer, the trip estimate, its deadlines). The rules that move an order are
engine.order_rules; both are pure (no I/O).

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

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine import dispatch
from engine.clock import iso
from engine.dispatch import Dispatch
from engine.geometry import distance_km
from engine.negotiation_views import OrderView

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


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentNoted:
    """News from the payments service about this order's money (never a client command)."""

    payment_status: str
    now: datetime
    reference: str | None = None


# What the payments service may tell an order about its money once the order was paid or
# cancelled: paid after the cancel, refunds under way or done, or paid again (a refund failed).
PAYMENT_NOTES = ("PAID", "PAID_AFTER_CANCEL", "REFUND_PENDING", "PARTIALLY_REFUNDED", "REFUNDED")


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
    elif lost_dispatch(order):
        due.append(order.confirmed_at or order.updated_at)
    return min(due, default=None)


def lost_dispatch(order: Order) -> bool:
    """Needs a rider yet no search is planned (state stored before dispatch existed, or
    written by hand): the timer's rule restarts the search."""
    d = order.dispatch
    return order.status in NEEDS_RIDER and order.rider_id is None and dispatch.next_due(d) is None
