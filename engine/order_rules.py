"""Pure order rules: the order state machine, who may move it, its SLA checks and dispatch steps.
The order itself (state, commands, events, views, deadlines) is engine.orders.

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

SLA checks: their deadlines are engine.orders' (`sla_deadlines`); `due` records the breaches.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine import dispatch
from engine import orders as o
from engine.assignment import AssignmentOffered, AssignmentWithdrawn, Carrying, Release, RiderCandidate
from engine.clock import iso
from engine.errors import DomainError
from engine.fields import int_error, invalid, text_error
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
from engine.orders import Event, Order, Policy
from engine.state import evolve


class CodeRejected(DomainError):
    """A wrong delivery code: refused (`forbidden`), yet the attempt counts. `order` has the
    attempt counted and `events` the ops record when this attempt locked the code."""

    def __init__(self, order: Order, events: list[Event], message: str) -> None:
        super().__init__("forbidden", message)
        self.order = order
        self.events = events


def code_locked(order: Order) -> bool:
    return order.code_attempts >= MAX_CODE_ATTEMPTS


# ---------------------------------------------------------------- helpers


def _conflict(order: Order, what: str) -> DomainError:
    return DomainError("conflict", f"order is {order.status}: {what}")


def _tell(rider_id: str, message: object) -> Event:
    return Event(0, o.TELL, {"riderId": rider_id, "message": message}, ())


def _revoke(order: Order, rider_id: str) -> list[Event]:
    """Withdraw an offer: the rider's sockets hear `assignment:revoked`, its actor forgets it."""
    return [
        Event(0, o.ASSIGNMENT_REVOKED, {"orderId": order.id}, (f"rider:{rider_id}",)),
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
    targets = (o.CUSTOMER, o.VENDOR, o.RIDER) if new.rider_id is not None else (o.CUSTOMER, o.VENDOR)
    return new, Event(new.seq, o.ORDER_STATUS, {"order": o.order_view(new), "event": body}, targets)


def _cancel(order: Order, now: datetime, by: str, reason: str) -> tuple[Order, list[Event]]:
    """CANCELED from any status before pickup: withdraw an open offer, free an assigned rider."""
    internal: list[Event] = []
    d = order.dispatch
    if d.offered_rider_id is not None:
        internal += _revoke(order, d.offered_rider_id)
    if order.rider_id is not None:
        internal.append(_tell(order.rider_id, Release(order.id)))
    new, event = _advance(
        order, now, by, extra={"reason": reason}, status=o.CANCELED, eta_minutes=None, dispatch=dispatch.stop(d)
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
    return Event(0, o.OPS, payload, ())


# ---------------------------------------------------------------- rules: payment and customer


def confirm_payment(order: Order, cmd: o.PaymentConfirmed) -> tuple[Order, list[Event]]:
    """PENDING_PAYMENT -> CONFIRMED; dispatch starts searching at once."""
    code = cmd.delivery_code
    ok_code = isinstance(code, str) and len(code) == DELIVERY_CODE_LENGTH and code.isdigit() and code.isascii()
    invalid({"deliveryCode": None if ok_code else f"must be {DELIVERY_CODE_LENGTH} digits"})
    if order.status != o.PENDING_PAYMENT:
        raise _conflict(order, "only an unpaid order can be confirmed")
    extra = {"reference": cmd.reference} if cmd.reference else None
    new, event = _advance(
        order,
        cmd.now,
        "payment",
        extra=extra,
        status=o.CONFIRMED,
        payment_status=o.PAID,
        confirmed_at=cmd.now,
        delivery_code=code,
        eta_minutes=order.prep_minutes,
        dispatch=dispatch.start(order.dispatch, cmd.now),
    )
    return new, [event]


def cancel_by_customer(order: Order, cmd: o.CustomerCancel) -> tuple[Order, list[Event]]:
    invalid({"reason": text_error(cmd.reason, REASON_MAX_LENGTH, required=True)})
    if cmd.customer_id != order.customer_id:
        raise DomainError("forbidden", "not your order")
    if order.status not in (o.PENDING_PAYMENT, o.CONFIRMED):
        raise _conflict(order, "the customer may cancel only before preparation starts")
    return _cancel(order, cmd.now, o.CUSTOMER, cmd.reason)


def rate(order: Order, cmd: o.Rate) -> tuple[Order, list[Event]]:
    """Once per DELIVERED order, by its customer; the store writes the review and the vendor's
    new average in the same transaction."""
    invalid(
        {
            "rating": int_error(cmd.rating, RATING_MIN, RATING_MAX),
            "comment": text_error(cmd.comment, REVIEW_COMMENT_MAX_LENGTH, required=False),
        }
    )
    if cmd.customer_id != order.customer_id:
        raise DomainError("forbidden", "not your order")
    if order.status != o.DELIVERED:
        raise _conflict(order, "only a delivered order can be rated")
    if order.rating is not None:
        raise DomainError("conflict", "this order is already rated")
    extra = {"rating": cmd.rating, "comment": cmd.comment}
    new, event = _advance(order, cmd.now, o.CUSTOMER, "rated", extra=extra, rating=cmd.rating)
    return new, [event]


# ---------------------------------------------------------------- rules: vendor


def vendor_update(order: Order, cmd: o.VendorUpdate) -> tuple[Order, list[Event]]:
    status = cmd.status
    invalid(
        {
            "status": None if status in o.VENDOR_TARGETS else "must be PREPARING, READY or CANCELED",
            "etaMinutes": None
            if cmd.eta_minutes is None
            else int_error(cmd.eta_minutes, ORDER_ETA_MINUTES_MIN, ORDER_ETA_MINUTES_MAX),
            "reason": text_error(cmd.reason, REASON_MAX_LENGTH, required=status == o.CANCELED),
        }
    )
    if cmd.vendor_id != order.vendor_id:
        raise DomainError("forbidden", "not your order")
    if status == o.CANCELED:
        if order.status not in o.BEFORE_PICKUP:
            raise _conflict(order, "the vendor may cancel only before pickup")
        assert cmd.reason is not None
        return _cancel(order, cmd.now, o.VENDOR, cmd.reason)
    if status == o.PREPARING:
        if order.status != o.CONFIRMED:
            raise _conflict(order, "PREPARING follows CONFIRMED")
        eta = order.eta_minutes if cmd.eta_minutes is None else cmd.eta_minutes
        new, event = _advance(order, cmd.now, o.VENDOR, status=o.PREPARING, eta_minutes=eta)
        return new, [event]
    if order.status != o.PREPARING:
        raise _conflict(order, "READY follows PREPARING")
    new, event = _advance(order, cmd.now, o.VENDOR, status=o.READY, eta_minutes=None)
    return new, [event]


# ---------------------------------------------------------------- rules: rider


def rider_update(order: Order, cmd: o.RiderUpdate) -> tuple[Order, list[Event]]:
    status = cmd.status
    invalid(
        {
            "status": None if status in o.RIDER_TARGETS else "must be PICKED_UP, OUT_FOR_DELIVERY or DELIVERED",
            "deliveryCode": "required" if status == o.DELIVERED and cmd.delivery_code is None else None,
        }
    )
    if order.rider_id is None or cmd.rider_id != order.rider_id:
        raise DomainError("forbidden", "this order is not assigned to you")
    now = cmd.now
    if status == o.PICKED_UP:
        if order.status != o.READY:
            raise _conflict(order, "PICKED_UP follows READY")
        new, event = _advance(
            order, now, o.RIDER, status=o.PICKED_UP, picked_up_at=now, eta_minutes=o.trip_minutes(order)
        )
        return new, [event]
    if status == o.OUT_FOR_DELIVERY:
        if order.status != o.PICKED_UP:
            raise _conflict(order, "OUT_FOR_DELIVERY follows PICKED_UP")
        picked = order.picked_up_at or now
        left = o.trip_minutes(order) - int((now - picked).total_seconds() // 60)
        new, event = _advance(order, now, o.RIDER, status=o.OUT_FOR_DELIVERY, eta_minutes=max(left, 1))
        return new, [event]
    if order.status != o.OUT_FOR_DELIVERY:
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
            ops = _ops(counted, o.CODE_LOCKED, now, None, f"Order {order.id}: delivery code locked", attempts=attempts)
            raise CodeRejected(counted, [ops], f"wrong delivery code; the code is now locked ({attempts} attempts)")
        left = MAX_CODE_ATTEMPTS - attempts
        raise CodeRejected(counted, [], f"wrong delivery code; {left} attempt(s) left")
    new, event = _advance(order, now, o.RIDER, status=o.DELIVERED, eta_minutes=None)
    return new, [event, _tell(order.rider_id, Release(order.id))]


# ---------------------------------------------------------------- rules: dispatch


def accept_assignment(order: Order, cmd: o.AcceptAssignment) -> tuple[Order, list[Event]]:
    """The offered rider takes the order (the service has reserved the rider already).
    Accepting again as the assigned rider changes nothing and succeeds (a retry)."""
    if order.rider_id == cmd.rider_id:
        return order, []
    d = order.dispatch
    if order.rider_id is not None or order.status not in o.NEEDS_RIDER:
        raise _conflict(order, "the order no longer needs a rider")
    if d.offered_rider_id != cmd.rider_id or dispatch.offer_expired(d, cmd.now):
        raise DomainError("conflict", "no open offer of this order for you (revoked, expired or taken)")
    new, event = _advance(
        order,
        cmd.now,
        o.RIDER,
        "rider_assigned",
        extra={"riderId": cmd.rider_id},
        rider_id=cmd.rider_id,
        rider_user_id=cmd.rider_user_id,
        dispatch=dispatch.stop(d),
    )
    carrying = Carrying(order.id, order.delivery_lat, order.delivery_lng)
    return new, [event, _tell(cmd.rider_id, carrying)]


def decline_assignment(order: Order, cmd: o.DeclineAssignment) -> tuple[Order, list[Event]]:
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
    if order.status not in o.NEEDS_RIDER or order.rider_id is not None or not dispatch.search_due(d, now):
        return order, []
    chosen = dispatch.pick(candidates, d)
    if chosen is None:
        return evolve(order, dispatch=dispatch.nobody(d, now, policy.dispatch_retry)), []
    offered = dispatch.offer(d, chosen.rider_id, now, policy.offer_ttl)
    expires = offered.offer_expires_at
    assert expires is not None
    new = evolve(order, dispatch=offered)
    return new, [
        Event(0, o.ASSIGNMENT_OFFER, o.offer_payload(order, expires), (f"rider:{chosen.rider_id}",)),
        _tell(chosen.rider_id, AssignmentOffered(order.id, expires)),
    ]


# ---------------------------------------------------------------- rules: time


_SLA_TEXT = {
    o.SLA_PREP_START: "is paid but preparation has not started",
    o.SLA_READY: "is not ready within the promised prep time",
    o.SLA_UNASSIGNED: "has no rider yet",
    o.SLA_DELIVERY: "is running late for delivery",
}


def _sla_notify(order: Order, kind: str) -> str | None:
    """Who the breach's notification goes to: the vendor for kitchen delays, the customer for
    a late delivery, ops (None) for a missing rider."""
    if kind in (o.SLA_PREP_START, o.SLA_READY):
        return order.vendor_user_id
    if kind == o.SLA_DELIVERY:
        return order.customer_id
    return None


def due(order: Order, now: datetime, policy: Policy) -> tuple[Order, list[Event]]:
    """The timer's rule: cancel an unpaid order, expire an unanswered offer, record SLA
    breaches. Idempotent: what is not due (yet, or any more) changes nothing."""
    if order.status in o.TERMINAL:
        return order, []
    if order.status == o.PENDING_PAYMENT:
        if now < o.unpaid_deadline(order, policy):
            return order, []
        return _cancel(order, now, "system", "unpaid")
    new, events = order, []
    d = order.dispatch
    if o.lost_dispatch(order):
        new = evolve(new, dispatch=dispatch.start(d, now))
    if dispatch.offer_expired(d, now) and d.offered_rider_id is not None:
        new = evolve(new, dispatch=dispatch.skip(d, d.offered_rider_id, now))
        events += _revoke(order, d.offered_rider_id)
    fired = [kind for kind, at in o.sla_deadlines(new, policy).items() if now >= at]
    for kind in fired:
        text = f"Order {order.id[:8]} {_SLA_TEXT[kind]}"
        events.append(_ops(new, f"sla:{kind}", now, _sla_notify(new, kind), text, sla=kind))
    if fired:
        new = evolve(new, sla_fired=new.sla_fired | frozenset(fired))
    return new, events


# ---------------------------------------------------------------- rules: money after confirmation (payments, issue 8)


def note_payment(order: Order, cmd: o.PaymentNoted) -> tuple[Order, list[Event]]:
    """Only `paymentStatus` changes, with an `order:status` event of kind `payment` (the order's
    status stays); the same news again changes nothing."""
    invalid({"paymentStatus": None if cmd.payment_status in o.PAYMENT_NOTES else f"must be one of {o.PAYMENT_NOTES}"})
    if cmd.payment_status == order.payment_status:
        return order, []
    extra: dict[str, Any] = {"paymentStatus": cmd.payment_status}
    if cmd.reference:
        extra["reference"] = cmd.reference
    new, event = _advance(order, cmd.now, "payment", "payment", extra=extra, payment_status=cmd.payment_status)
    return new, [event]
