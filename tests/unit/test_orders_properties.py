"""Property tests: no sequence of commands, from any party, in any order, at any time, moves an
order backwards, skips a status, or gets past CONFIRMED without PaymentConfirmed; refused
commands change nothing (a wrong delivery code changes only its attempt counter)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine import order_rules as rules
from engine import orders as o
from engine.assignment import RiderCandidate
from engine.errors import DomainError
from engine.orders import Event, Order, Policy
from engine.state import evolve
from tests.unit.order_support import CODE, CUSTOMER, VENDOR, new_order

CODES = {"invalid", "forbidden", "conflict"}
RIDERS = ("rider-1", "rider-2", "rider-3")
POLICY = Policy(offer_ttl=timedelta(seconds=30), dispatch_retry=timedelta(seconds=15))

customers = st.sampled_from([CUSTOMER, CUSTOMER, "cust-2"])
vendors = st.sampled_from([VENDOR, VENDOR, "vend-2"])
riders = st.sampled_from(RIDERS)
its_rider = st.sampled_from([None, None, *RIDERS])  # None: the rider the order is offered / assigned to
# Mostly the moves each party may make, so orders get far; every status stays possible.
vendor_moves = st.sampled_from([o.PREPARING, o.READY] * 4 + list(o.STATUSES))
rider_moves = st.sampled_from([o.PICKED_UP, o.OUT_FOR_DELIVERY, o.DELIVERED] * 3 + list(o.STATUSES))
codes = st.sampled_from([CODE, CODE, CODE, "000000", None])
# Mostly seconds (offers answered in time), sometimes long enough for every deadline.
steps = st.integers(0, 100).map(lambda k: timedelta(seconds=k if k < 90 else (k - 89) * 400))
rarely = st.integers(0, 5)  # a customer cancels only on 0: orders last long enough


class OrderLife(RuleBasedStateMachine):
    order: Order
    now: datetime
    paid: bool

    @initialize()
    def start(self) -> None:
        self.order = new_order()
        self.now = self.order.created_at
        self.paid = False

    # ---------------------------------------------------------------- applying and checking

    def apply(self, fn: Callable[[], tuple[Order, list[Event]]], *, payment: bool = False) -> None:
        before = self.order
        try:
            new, events = fn()
        except rules.CodeRejected as exc:
            assert exc.code == "forbidden"
            assert evolve(exc.order, code_attempts=before.code_attempts, updated_at=before.updated_at) == before
            assert exc.order.code_attempts == before.code_attempts + 1
            self.order = exc.order
            return
        except DomainError as exc:
            assert exc.code in CODES, exc.code
            assert self.order is before
            return
        self.check(before, new, events, payment)
        if payment:
            self.paid = True
        self.order = new

    def check(self, before: Order, new: Order, events: list[Event], payment: bool) -> None:
        if before.status in o.TERMINAL:
            assert new.status == before.status  # never left
        if new.status != before.status:
            if new.status == o.CANCELED:
                assert before.status in o.BEFORE_PICKUP
            else:
                assert o.RANK[new.status] == o.RANK[before.status] + 1  # one step forward, never back
                assert self.paid or (payment and new.status == o.CONFIRMED)  # nothing past payment without it
        seqs = [e.seq for e in events if e.kind == o.ORDER_STATUS]
        assert seqs == list(range(before.seq + 1, new.seq + 1))
        assert all(e.seq == 0 for e in events if e.kind != o.ORDER_STATUS)
        for e in events:
            if e.kind == o.ORDER_STATUS:
                assert "deliveryCode" not in e.payload["order"]
        if before.rider_id is not None:
            assert new.rider_id == before.rider_id

    @invariant()
    def paid_means_paid(self) -> None:
        if not self.paid:
            assert self.order.status in (o.PENDING_PAYMENT, o.CANCELED)
            assert self.order.payment_status != o.PAID and self.order.delivery_code is None
        else:
            assert self.order.payment_status == o.PAID and self.order.delivery_code == CODE

    @invariant()
    def rider_only_when_paid(self) -> None:
        d = self.order.dispatch
        if not self.paid:
            assert self.order.rider_id is None and d.offered_rider_id is None

    # ---------------------------------------------------------------- commands

    @rule()
    def the_order_moves_on(self) -> None:
        """The next move its rightful party would make, so random runs reach delivery and
        rating; every other rule interferes."""
        order, now = self.order, self.now
        if order.status == o.PENDING_PAYMENT:
            self.payment(CODE)
        elif order.status in o.NEEDS_RIDER and order.rider_id is None:
            if order.dispatch.offered_rider_id is None:
                self.apply(lambda: rules.offer_next(order, [RiderCandidate(RIDERS[0], 1.0)], now, POLICY))
            else:
                self.rider_accepts(None)
        elif order.status in (o.CONFIRMED, o.PREPARING):
            self.vendor_updates(VENDOR, o.PREPARING if order.status == o.CONFIRMED else o.READY, None)
        elif order.status in (o.READY, o.PICKED_UP, o.OUT_FOR_DELIVERY):
            nxt = {o.READY: o.PICKED_UP, o.PICKED_UP: o.OUT_FOR_DELIVERY, o.OUT_FOR_DELIVERY: o.DELIVERED}
            self.rider_updates(None, nxt[order.status], CODE)
        elif order.status == o.DELIVERED:
            self.customer_rates(CUSTOMER, 5)

    @rule(step=steps)
    def time_passes(self, step: timedelta) -> None:
        self.now += step
        self.apply(lambda: rules.due(self.order, self.now, POLICY))

    @rule(code=st.sampled_from([CODE, CODE, "12345"]))
    def payment(self, code: str) -> None:
        cmd = o.PaymentConfirmed(delivery_code=code, now=self.now)
        self.apply(lambda: rules.confirm_payment(self.order, cmd), payment=code == CODE)

    @rule(who=customers, dice=rarely)
    def customer_cancels(self, who: str, dice: int) -> None:
        if dice:
            return
        cmd = o.CustomerCancel(customer_id=who, reason="changed my mind", now=self.now)
        self.apply(lambda: rules.cancel_by_customer(self.order, cmd))

    @rule(who=vendors, to=vendor_moves, reason=st.sampled_from(["sold out", None]))
    def vendor_updates(self, who: str, to: str, reason: str | None) -> None:
        cmd = o.VendorUpdate(vendor_id=who, status=to, reason=reason, now=self.now)
        self.apply(lambda: rules.vendor_update(self.order, cmd))

    def rider(self, who: str | None) -> str:
        return who or self.order.rider_id or self.order.dispatch.offered_rider_id or RIDERS[0]

    @rule(who=its_rider, to=rider_moves, code=codes)
    def rider_updates(self, who: str | None, to: str, code: str | None) -> None:
        cmd = o.RiderUpdate(rider_id=self.rider(who), status=to, delivery_code=code, now=self.now)
        self.apply(lambda: rules.rider_update(self.order, cmd))

    @rule(found=st.lists(riders, max_size=3, unique=True))
    def search_finds(self, found: list[str]) -> None:
        candidates = [RiderCandidate(r, float(i)) for i, r in enumerate(found)]
        self.apply(lambda: rules.offer_next(self.order, candidates, self.now, POLICY))

    @rule(who=its_rider)
    def rider_accepts(self, who: str | None) -> None:
        rider = self.rider(who)
        cmd = o.AcceptAssignment(rider_id=rider, rider_user_id=f"user-{rider}", now=self.now)
        self.apply(lambda: rules.accept_assignment(self.order, cmd))

    @rule(who=its_rider)
    def rider_declines(self, who: str | None) -> None:
        cmd = o.DeclineAssignment(rider_id=self.rider(who), now=self.now)
        self.apply(lambda: rules.decline_assignment(self.order, cmd))

    @rule(who=riders)
    def rider_goes_offline(self, who: str) -> None:
        self.apply(lambda: rules.rider_unavailable(self.order, who, self.now))

    @rule(who=customers, rating=st.integers(0, 6))
    def customer_rates(self, who: str, rating: int) -> None:
        cmd = o.Rate(customer_id=who, rating=rating, now=self.now)
        self.apply(lambda: rules.rate(self.order, cmd))


OrderLife.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestOrderLife = OrderLife.TestCase
