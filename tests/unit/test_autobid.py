"""Auto-bid rules, offer ranking and the circuit breaker: pure logic, no I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adapters.ai.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from engine import autobid, recommend
from engine.limits import MAX_PRICE_KOBO

LAGOS = (6.5244, 3.3792)
RULE = autobid.Rule("v1", "Nigerian", min_price_kobo=280_000, radius_km=5.0)


def seen(category: str = "nigerian", budget_max: int = 500_000, north_km: float = 1.0) -> autobid.Seen:
    return autobid.Seen(category, budget_max, LAGOS[0] + north_km / 111.195, LAGOS[1], *LAGOS)


def test_a_rule_matches_its_category_within_its_radius_and_a_budget_that_pays_the_floor() -> None:
    km = autobid.match(RULE, seen())
    assert km is not None and abs(km - 1.0) < 0.01
    assert autobid.match(RULE, seen(" NIGERIAN ")) is not None  # trimmed, case-insensitive
    assert autobid.match(RULE, seen("pizza")) is None
    assert autobid.match(RULE, seen(north_km=5.2)) is None  # outside the radius
    assert autobid.match(RULE, seen(budget_max=279_999)) is None  # cannot pay the floor
    assert autobid.match(RULE, seen(budget_max=280_000)) is not None


def test_the_price_is_the_suggestion_never_under_the_floor() -> None:
    assert autobid.bid_price(RULE, 350_000) == 350_000
    assert autobid.bid_price(RULE, 100) == 280_000
    assert autobid.bid_price(RULE, MAX_PRICE_KOBO * 10) == MAX_PRICE_KOBO
    assert autobid.bid_price(RULE, None) is None  # no suggestion: no automatic bid


@given(
    floor=st.integers(1, MAX_PRICE_KOBO),
    suggestion=st.one_of(st.none(), st.integers(-(10**12), 10**12)),
    radius=st.floats(0.1, 50),
    north_km=st.floats(0, 100),
)
def test_never_under_the_floor_nor_outside_the_radius(
    floor: int, suggestion: int | None, radius: float, north_km: float
) -> None:
    rule = autobid.Rule("v", "x", floor, radius)
    km = autobid.match(rule, autobid.Seen("x", MAX_PRICE_KOBO, LAGOS[0] + north_km / 111.195, LAGOS[1], *LAGOS))
    assert km is None or km <= radius
    price = autobid.bid_price(rule, suggestion)
    assert price is None if suggestion is None else floor <= price <= MAX_PRICE_KOBO


def _offer(i: str, price: int, status: str = "PENDING", at: str = "2026-01-01T00:00:00.000Z") -> dict[str, object]:
    return {"id": i, "priceKobo": price, "status": status, "createdAt": at}


def test_ranks_builtin_and_preferred() -> None:
    offers = [
        _offer("a", 300),
        _offer("b", 200),
        _offer("c", 200, at="2026-01-01T00:00:01.000Z"),
        _offer("gone", 100, "WITHDRAWN"),
    ]
    assert recommend.ranks(offers) == {"b": 1, "c": 2, "a": 3}
    # The service's order first (unknown, repeated and non-live ids ignored), the rest built-in.
    assert recommend.ranks(offers, ["a", "zzz", "a", "gone"]) == {"a": 1, "b": 2, "c": 3}
    assert recommend.ranks([], ["a"]) == {}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_failures_in_a_row_and_closes_after_a_good_trial() -> None:
    clock, changes = Clock(), []
    b = CircuitBreaker(3, 10.0, clock, on_change=changes.append)
    b.failure()
    b.failure()
    b.success()  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state == OPEN and not b.allow()
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.0
    assert b.allow() and b.state == HALF_OPEN
    assert not b.allow()  # one trial at a time
    b.failure()  # the trial failed: open for another period
    assert b.state == OPEN and not b.allow()
    clock.now = 20.0
    assert b.allow()
    b.abandon()  # a cancelled trial counts neither way: the next caller may try
    assert b.allow()
    b.success()
    assert b.state == CLOSED and b.allow() and b.allow()
    assert changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]
