"""Property tests: random negotiations across several vendors keep the rules' invariants,
and no rule, successful or refused, ever changes the state it was given."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from engine import limits
from engine import negotiation as n
from engine import negotiation_views as views
from engine.errors import DomainError
from engine.negotiation import Event, MealRequest
from engine.negotiation_statuses import ACCEPTED, COUNTERED, LIVE, OPEN

T0 = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
CUSTOMER = "cust-1"
VENDORS = ("v1", "v2", "v3", "v4", "v5")
CODES = {"invalid", "forbidden", "not_found", "conflict", "expired", "limit_reached"}

# Few distinct prices around the budget, so ties and over-budget offers are common; some invalid ones.
INVALID_PRICES = (0, -1, True, limits.MAX_PRICE_KOBO + 1)
prices = st.integers(1, 24).map(lambda k: k * 50_000 if k <= 20 else INVALID_PRICES[k - 21])
vendors = st.sampled_from(VENDORS)
customers = st.sampled_from([CUSTOMER, CUSTOMER, CUSTOMER, "intruder"])
rarely = st.integers(0, 9)  # closing commands act only on 0, so negotiations last long enough


def expected_flags(req: MealRequest) -> dict[str, bool]:
    live = sorted(o.price_kobo for o in req.offers.values() if o.status in LIVE)
    if not live:
        return {}
    k = len(live)
    median = Fraction(live[(k - 1) // 2] + live[k // 2], 2)
    return {o.id: o.price_kobo <= median for o in req.offers.values() if o.status in LIVE}


class Negotiation(RuleBasedStateMachine):
    offers = Bundle("offers")  # ids of placed offers
    offer_ids = st.one_of(offers, offers, offers, st.just("unknown"))
    req: MealRequest
    now: datetime
    events: list[Event]

    @initialize(
        max_offers=st.integers(1, 5),
        minutes=st.integers(1, 30),
        budget_max=st.integers(1, 12).map(lambda k: k * 50_000),
    )
    def create(self, max_offers: int, minutes: int, budget_max: int) -> None:
        self.now = T0
        self.req, self.events = n.create_request(
            n.CreateRequest(
                request_id="req-1",
                customer_id=CUSTOMER,
                category="suya",
                budget_min_kobo=1,
                budget_max_kobo=budget_max,
                delivery_lat=9.05,
                delivery_lng=7.49,
                address_line="Wuse 2",
                now=T0,
                expires_in_minutes=minutes,
                max_vendor_offers=max_offers,
            )
        )
        self.placed = 0

    # ------------------------------------------------------------ helpers

    def run(self, command: Callable[[MealRequest], Any]) -> Any:
        """Apply a command to the current state, which it must leave exactly as it was, refused
        or not; on success the machine moves on to the state the rule returned."""
        req = self.req
        before = deepcopy(req)
        try:
            out = command(req)
        except DomainError as err:
            assert err.code in CODES
            return None
        finally:
            assert req == before, "a rule changed the state it was given"
        new, events = out[0], out[1]
        assert [e.seq for e in events] == list(range(before.seq + 1, before.seq + 1 + len(events)))
        assert new.seq == before.seq + len(events)
        if not events:
            assert new is req
        self.req = new
        self.events.extend(events)
        return out

    def vendor_for(self, offer_id: str, vendor: str, own: bool) -> str:
        offer = self.req.offers.get(offer_id)
        return offer.vendor_id if own and offer is not None else vendor

    # ------------------------------------------------------------ rules

    @rule(seconds=st.integers(0, 120))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(
        target=offers,
        vendor=vendors,
        price=prices,
        verified=st.sampled_from([True] * 5 + [False]),
        in_range=st.sampled_from([True] * 5 + [False]),
    )
    def place(self, vendor: str, price: int, verified: bool, in_range: bool) -> object:
        self.placed += 1
        oid = f"off-{self.placed}"
        self.run(
            lambda r: n.place_offer(
                r,
                n.PlaceOffer(
                    offer_id=oid,
                    vendor_id=vendor,
                    vendor_name=vendor.upper(),
                    vendor_verified=verified,
                    vendor_lat=r.delivery_lat + (0.0 if in_range else 1.0),
                    vendor_lng=r.delivery_lng,
                    vendor_km=5.0,
                    price_kobo=price,
                    now=self.now,
                ),
            )
        )
        return multiple(oid) if oid in self.req.offers else multiple()

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offer_ids, vendor=vendors, own=st.booleans(), price=prices)
    def revise(self, oid: str, vendor: str, own: bool, price: int) -> None:
        vid = self.vendor_for(oid, vendor, own)
        self.run(
            lambda r: n.revise_offer(r, n.ReviseOffer(offer_id=oid, vendor_id=vid, price_kobo=price, now=self.now))
        )

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offer_ids, vendor=vendors, own=st.booleans())
    def withdraw(self, oid: str, vendor: str, own: bool) -> None:
        vid = self.vendor_for(oid, vendor, own)
        self.run(lambda r: n.withdraw_offer(r, n.WithdrawOffer(vendor_id=vid, offer_id=oid, now=self.now)))

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offer_ids, customer=customers, price=prices)
    def counter(self, oid: str, customer: str, price: int) -> None:
        self.run(
            lambda r: n.counter_offer(
                r, n.CounterOffer(customer_id=customer, offer_id=oid, price_kobo=price, now=self.now)
            )
        )

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offer_ids, vendor=vendors, own=st.booleans())
    def accept_counter(self, oid: str, vendor: str, own: bool) -> None:
        vid = self.vendor_for(oid, vendor, own)
        self.run(lambda r: n.accept_counter(r, n.AcceptCounter(vendor_id=vid, offer_id=oid, now=self.now)))

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offers, price=prices, answer_price=prices, take_counter=st.booleans())
    def haggle(self, oid: str, price: int, answer_price: int, take_counter: bool) -> None:
        """A counter and the vendor's answer in one step, so offers reach the round limit."""
        self.counter(oid, CUSTOMER, price)
        if take_counter:
            self.accept_counter(oid, "", own=True)
        else:
            self.revise(oid, "", own=True, price=answer_price)

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offer_ids, customer=customers, go=st.integers(0, 2))
    def accept(self, oid: str, customer: str, go: int) -> None:
        if go != 0:
            return
        out = self.run(
            lambda r: n.accept_offer(
                r, n.AcceptOffer(customer_id=customer, offer_id=oid, order_id="ord-1", now=self.now)
            )
        )
        if out is not None:  # accepted: the order is priced at the accepted offer
            order = out[2]
            assert self.req.accepted_offer_id == oid == order.offer_id and self.req.order_id == "ord-1"
            assert order.amount_kobo == self.req.offers[oid].price_kobo
            assert order.vendor_id == self.req.offers[oid].vendor_id

    @precondition(lambda self: bool(self.req.offers))
    @rule(oid=offer_ids, customer=customers)
    def reject(self, oid: str, customer: str) -> None:
        self.run(lambda r: n.reject_offer(r, n.RejectOffer(customer_id=customer, offer_id=oid, now=self.now)))

    @rule(customer=customers, go=rarely)
    def cancel(self, customer: str, go: int) -> None:
        if go == 0:
            self.run(lambda r: n.cancel_request(r, n.CancelRequest(customer_id=customer, now=self.now)))

    @rule(go=rarely)
    def expire(self, go: int) -> None:
        if go == 0:
            self.run(lambda r: n.expire_request(r, self.now))

    # ------------------------------------------------------------ invariants

    @invariant()
    def one_accepted_offer_iff_accepted_request(self) -> None:
        accepted = [o.id for o in self.req.offers.values() if o.status == ACCEPTED]
        assert len(accepted) <= 1
        assert (self.req.status == ACCEPTED) == (len(accepted) == 1)
        assert self.req.accepted_offer_id == (accepted[0] if accepted else None)

    @invariant()
    def seqs_are_gap_free(self) -> None:
        assert [e.seq for e in self.events] == list(range(1, self.req.seq + 1))
        assert all(e.payload["seq"] == e.seq for e in self.events)
        assert self.events[0].kind == "request:new"
        assert all(any(aud == "room" for aud, _ in e.targets) for e in self.events[1:])

    @invariant()
    def rounds_are_bounded(self) -> None:
        assert all(0 <= o.round <= limits.MAX_COUNTER_ROUNDS for o in self.req.offers.values())

    @invariant()
    def live_flags_match_a_fresh_recomputation(self) -> None:
        live = {o.id: o.is_competitive for o in self.req.offers.values() if o.status in LIVE}
        assert live == expected_flags(self.req)

    @invariant()
    def closed_requests_have_no_live_offers(self) -> None:
        live = [o for o in self.req.offers.values() if o.status in LIVE]
        if self.req.status != OPEN:
            assert live == []
        assert len(live) <= self.req.max_vendor_offers
        assert len({o.vendor_id for o in live}) == len(live)  # one live offer per vendor

    @invariant()
    def derived_fields_agree(self) -> None:
        for o in self.req.offers.values():
            assert o.over_budget == (o.price_kobo > self.req.budget_max_kobo)
            assert o.status != COUNTERED or o.counter_price_kobo is not None
        view = views.request_view(self.req)
        assert view["seq"] == self.req.seq
        assert view["offerCount"] == sum(o.status in LIVE | {ACCEPTED} for o in self.req.offers.values())


Negotiation.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestNegotiation = Negotiation.TestCase


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 8).map(lambda k: k * 100), min_size=1, max_size=12))
def test_competitive_flags_follow_the_median(price_list: list[int]) -> None:
    req, _ = n.create_request(
        n.CreateRequest(
            request_id="r",
            customer_id=CUSTOMER,
            category="c",
            budget_min_kobo=1,
            budget_max_kobo=500,
            delivery_lat=0,
            delivery_lng=0,
            address_line="a",
            now=T0,
            max_vendor_offers=20,
        )
    )
    for i, price in enumerate(price_list):
        req, _ = n.place_offer(
            req,
            n.PlaceOffer(
                offer_id=f"o{i}",
                vendor_id=f"v{i}",
                vendor_name="v",
                vendor_verified=True,
                vendor_lat=0,
                vendor_lng=0,
                vendor_km=5.0,
                price_kobo=price,
                now=T0,
            ),
        )
    flags = {o.id: o.is_competitive for o in req.offers.values()}
    assert flags == expected_flags(req)
    assert sum(flags.values()) * 2 >= len(flags)  # at least half the offers are at or below the median
    assert flags[min(req.offers.values(), key=lambda o: o.price_kobo).id]  # the cheapest always is
    assert n.recompute_competitive(req.offers) == []  # already up to date
