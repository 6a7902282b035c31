"""Builders shared by the order rule, dispatch and order actor tests.

Orders reach a status the way production does (payment, vendor updates, an offer the rider
accepts, rider updates), so a test at READY holds a state the rules themselves produced.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine import order_rules as rules
from engine import orders as o
from engine.assignment import RiderCandidate
from engine.orders import Event, Order, Policy

T0 = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
ORDER_ID = "00000000-0000-4000-8000-000000000001"
CUSTOMER = "cust-1"
VENDOR = "vend-1"
VENDOR_USER = "vend-user-1"
RIDER = "rider-1"
RIDER_USER = "rider-user-1"
CODE = "123456"
POLICY = Policy()
PICKUP = (6.5244, 3.3792)
DROPOFF = (6.5400, 3.3900)  # ~2.1 km from the pickup

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


def new_order(**changes: object) -> Order:
    """An unpaid order as the meal-request actor creates it."""
    fields: dict[str, object] = {
        "id": ORDER_ID,
        "request_id": "req-1",
        "offer_id": "offer-1",
        "customer_id": CUSTOMER,
        "vendor_id": VENDOR,
        "vendor_user_id": VENDOR_USER,
        "vendor_name": "Mama Put",
        "pickup_lat": PICKUP[0],
        "pickup_lng": PICKUP[1],
        "amount_kobo": 300_000,
        "status": o.PENDING_PAYMENT,
        "payment_status": "PENDING",
        "delivery_lat": DROPOFF[0],
        "delivery_lng": DROPOFF[1],
        "created_at": T0,
        "updated_at": T0,
        "prep_minutes": 20,
        **changes,
    }
    return Order(**fields)  # type: ignore[arg-type]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def paid(order: Order, now: datetime | None = None) -> Order:
    return rules.confirm_payment(order, o.PaymentConfirmed(delivery_code=CODE, now=now or at(1)))[0]


def vendor(order: Order, status: str, now: datetime | None = None, **kw: object) -> Order:
    cmd = o.VendorUpdate(vendor_id=VENDOR, status=status, now=now or order.updated_at, **kw)  # type: ignore[arg-type]
    return rules.vendor_update(order, cmd)[0]


def offered(order: Order, rider: str = RIDER, now: datetime | None = None) -> Order:
    """The order offered to `rider` (a search just ran and found it nearest)."""
    when = now or order.dispatch.retry_at or order.updated_at
    return rules.offer_next(order, [RiderCandidate(rider, 0.5)], when, POLICY)[0]


def assigned(order: Order, rider: str = RIDER, user: str = RIDER_USER) -> Order:
    order = offered(order, rider)
    now = order.dispatch.offer_expires_at
    assert now is not None
    cmd = o.AcceptAssignment(rider_id=rider, rider_user_id=user, now=now - timedelta(seconds=1))
    return rules.accept_assignment(order, cmd)[0]


def rider(order: Order, status: str, code: str | None = None, now: datetime | None = None) -> Order:
    cmd = o.RiderUpdate(rider_id=RIDER, status=status, delivery_code=code, now=now or order.updated_at)
    return rules.rider_update(order, cmd)[0]


def at_status(status: str, *, with_rider: bool = True, t0: datetime = T0) -> Order:
    """An order the rules brought to `status`, created at `t0` (a rider is assigned from
    CONFIRMED on when `with_rider`; from PICKED_UP on always)."""
    order = new_order(created_at=t0, updated_at=t0)
    now = t0 + timedelta(minutes=1)
    if status == o.PENDING_PAYMENT:
        return order
    if status == o.CANCELED:
        cmd = o.CustomerCancel(customer_id=CUSTOMER, reason="changed my mind", now=now)
        return rules.cancel_by_customer(order, cmd)[0]
    order = paid(order, now)
    if with_rider or o.RANK[status] > o.RANK[o.READY]:
        order = assigned(order)
    for step in (o.PREPARING, o.READY):
        if o.RANK[status] >= o.RANK[step]:
            order = vendor(order, step)
    for step in (o.PICKED_UP, o.OUT_FOR_DELIVERY):
        if o.RANK[status] >= o.RANK[step]:
            order = rider(order, step)
    if status == o.DELIVERED:
        order = rider(order, o.DELIVERED, CODE)
    assert order.status == status
    return order


def status_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == o.ORDER_STATUS]


def tells(events: list[Event]) -> list[tuple[str, object]]:
    return [(e.payload["riderId"], e.payload["message"]) for e in events if e.kind == o.TELL]
