"""Dispatch policy: nearest eligible rider first, one offer at a time, skipped riders never
again for the order, retry after finding nobody, and the fee of an offer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine import dispatch as d
from engine.assignment import RiderCandidate

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def c(rider: str, km: float) -> RiderCandidate:
    return RiderCandidate(rider, km)


def test_radii_widen_step_by_step() -> None:
    assert d.RADII_KM == (3.0, 6.0, 10.0, 20.0)
    assert list(d.RADII_KM) == sorted(d.RADII_KM)


def test_pick_takes_the_nearest_not_skipped() -> None:
    state = d.Dispatch(skipped=("a",))
    assert d.pick([c("b", 2.0), c("a", 0.5), c("x", 1.0)], state) == c("x", 1.0)
    assert d.pick([c("a", 0.5)], state) is None
    assert d.pick([], d.IDLE) is None


def test_one_offer_at_a_time_with_a_deadline() -> None:
    state = d.start(d.IDLE, NOW)
    assert d.search_due(state, NOW) and d.next_due(state) == NOW
    state = d.offer(state, "a", NOW, TTL)
    assert state.offered_rider_id == "a" and state.offers_made == 1
    assert not d.search_due(state, NOW + TTL * 10)  # no second offer while one is open
    assert d.next_due(state) == NOW + TTL
    assert not d.offer_expired(state, NOW + TTL - timedelta(microseconds=1))
    assert d.offer_expired(state, NOW + TTL)
    assert d.pick([c("a", 0.1)], state) is None  # never re-offered to the rider holding it


def test_decline_or_timeout_skips_the_rider_and_searches_at_once() -> None:
    state = d.skip(d.offer(d.start(d.IDLE, NOW), "a", NOW, TTL), "a", NOW + TTL)
    assert state.offered_rider_id is None and state.skipped == ("a",) and state.retry_at == NOW + TTL
    assert d.search_due(state, NOW + TTL)
    state = d.skip(d.offer(state, "b", NOW + TTL, TTL), "b", NOW + TTL)
    assert state.skipped == ("a", "b") and state.offers_made == 2


def test_nobody_plans_the_next_search() -> None:
    state = d.nobody(d.start(d.IDLE, NOW), NOW, timedelta(seconds=15))
    assert not d.search_due(state, NOW) and d.search_due(state, NOW + timedelta(seconds=15))


def test_search_limit_leaves_room_past_skipped_riders() -> None:
    state = d.Dispatch(skipped=tuple(f"r{i}" for i in range(7)))
    assert d.search_limit(state) == d.SEARCH_LIMIT + 7


def test_skip_list_is_bounded() -> None:
    state = d.IDLE
    for i in range(d.MAX_SKIPPED + 5):
        state = d.skip(state, f"r{i}", NOW)
    assert len(state.skipped) == d.MAX_SKIPPED and state.skipped[-1] == f"r{d.MAX_SKIPPED + 4}"


def test_stop_ends_dispatch_but_keeps_history() -> None:
    state = d.stop(d.offer(d.Dispatch(skipped=("a",)), "b", NOW, TTL))
    assert d.next_due(state) is None and state.skipped == ("a",) and state.offers_made == 1


def test_fee_is_base_plus_per_km_rounded_up_to_whole_naira() -> None:
    assert d.delivery_fee_kobo(0) == d.FEE_BASE_KOBO
    assert d.delivery_fee_kobo(2.0) == d.FEE_BASE_KOBO + 2 * d.FEE_PER_KM_KOBO
    assert d.delivery_fee_kobo(2.001) % 100 == 0 and d.delivery_fee_kobo(2.001) > d.delivery_fee_kobo(2.0)
    assert d.delivery_fee_kobo(-1) == d.FEE_BASE_KOBO
