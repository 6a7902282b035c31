"""engine.tracking: ping validation, jumps, stale fixes, recent speed, coalescing and the ETA."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import limits, tracking
from engine.errors import EngineError
from engine.tracking import Fix, SpeedEta, Track

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LAT, LNG = 6.5244, 3.3792
KM_PER_DEG_LAT = 111.2  # near the equator, close enough for these tests

GOOD: dict[str, Any] = {"lat": LAT, "lng": LNG, "recorded_at": NOW, "heading": 90.0, "speed_kmh": 20.0, "accuracy_m": 5}


def _validate(**changes: Any) -> Fix:
    return tracking.validate(**{**GOOD, **changes}, now=NOW)


# (field changed, value, wire field named in details, or None when accepted)
CASES: list[tuple[str, Any, str | None]] = [
    ("lat", 90, None),
    ("lat", -90.0, None),
    ("lat", 90.0001, "lat"),
    ("lat", -91, "lat"),
    ("lat", math.nan, "lat"),
    ("lat", math.inf, "lat"),
    ("lat", True, "lat"),
    ("lat", "6.5", "lat"),
    ("lat", None, "lat"),
    ("lng", 180, None),
    ("lng", -180.5, "lng"),
    ("lng", -math.inf, "lng"),
    ("heading", 0, None),
    ("heading", 360, None),
    ("heading", None, None),
    ("heading", 360.5, "heading"),
    ("heading", -1, "heading"),
    ("heading", math.nan, "heading"),
    ("speed_kmh", 0, None),
    ("speed_kmh", limits.RIDER_SPEED_MAX_KMH, None),
    ("speed_kmh", limits.RIDER_SPEED_MAX_KMH + 0.1, "speedKmh"),
    ("speed_kmh", -0.1, "speedKmh"),
    ("speed_kmh", False, "speedKmh"),
    ("accuracy_m", limits.RIDER_ACCURACY_MAX_M, None),
    ("accuracy_m", limits.RIDER_ACCURACY_MAX_M + 1, "accuracyM"),
    ("accuracy_m", math.inf, "accuracyM"),
    ("recorded_at", NOW + limits.PING_FUTURE_SKEW, None),
    ("recorded_at", NOW + limits.PING_FUTURE_SKEW + timedelta(milliseconds=1), "recordedAt"),
    ("recorded_at", NOW - limits.PING_MAX_AGE, None),
    ("recorded_at", NOW - limits.PING_MAX_AGE - timedelta(milliseconds=1), "recordedAt"),
    ("recorded_at", NOW.replace(tzinfo=None), "recordedAt"),
    ("recorded_at", "2026-11-25T12:00:00Z", "recordedAt"),
    ("recorded_at", None, "recordedAt"),
]


@pytest.mark.parametrize(("field", "value", "bad"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_validation_table(field: str, value: Any, bad: str | None) -> None:
    if bad is None:
        fix = _validate(**{field: value})
        assert isinstance(fix.lat, float) and isinstance(fix.lng, float)
        return
    with pytest.raises(EngineError) as info:
        _validate(**{field: value})
    assert info.value.code == "invalid"
    assert info.value.details is not None and set(info.value.details) == {bad}


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(EngineError) as info:
        _validate(lat=91, heading=400, recorded_at=NOW + timedelta(hours=1))
    assert info.value.details is not None and set(info.value.details) == {"lat", "heading", "recordedAt"}


def test_optional_fields_may_be_missing_and_ints_become_floats() -> None:
    fix = tracking.validate(6, 3, NOW, NOW)
    assert fix == Fix(6.0, 3.0, NOW) and type(fix.lat) is float


# ---------------------------------------------------------------- jumps and stale fixes


def fix_at(seconds: float, north_km: float = 0.0, **kw: Any) -> Fix:
    """A fix `seconds` after NOW, `north_km` north of the start."""
    return Fix(LAT + north_km / KM_PER_DEG_LAT, LNG, NOW + timedelta(seconds=seconds), **kw)


def test_first_fix_is_accepted() -> None:
    track, reason = tracking.advance(Track(), fix_at(0))
    assert reason is None and track.last == fix_at(0)


def test_plausible_move_is_accepted_and_an_implausible_one_dropped() -> None:
    track, _ = tracking.advance(Track(), fix_at(0))
    ok, reason = tracking.advance(track, fix_at(10, north_km=0.3))  # 108 km/h
    assert reason is None and ok.last == fix_at(10, north_km=0.3)
    dropped, reason = tracking.advance(track, fix_at(10, north_km=1.0))  # 360 km/h
    assert reason == tracking.JUMP
    assert dropped.last == track.last and dropped.jumps_in_row == 1


def test_gps_error_is_not_a_jump() -> None:
    """30 m in half a second is 216 km/h on paper, but within two fixes' inaccuracy (20 m
    assumed for each fix that reports none)."""
    track, _ = tracking.advance(Track(), fix_at(0))
    _, reason = tracking.advance(track, fix_at(0.5, north_km=0.03))
    assert reason is None
    # A precise fix explains less: 21 m of slack leaves 9 m in 0.5 s (65 km/h), plausible...
    _, reason = tracking.advance(track, fix_at(0.5, north_km=0.03, accuracy_m=1.0))
    assert reason is None
    # ...but 200 m leaves 179 m in 0.5 s (1,289 km/h).
    _, reason = tracking.advance(track, fix_at(0.5, north_km=0.2, accuracy_m=1.0))
    assert reason == tracking.JUMP


def test_fix_not_newer_than_the_last_is_stale() -> None:
    track, _ = tracking.advance(Track(), fix_at(10))
    for seconds in (10, 5):
        same, reason = tracking.advance(track, fix_at(seconds))
        assert reason == tracking.STALE and same is track


def test_after_enough_jumps_in_a_row_the_old_anchor_was_the_glitch() -> None:
    track, _ = tracking.advance(Track(), fix_at(0))  # the glitch
    far = 50.0
    for i in range(tracking.JUMPS_BEFORE_REANCHOR):
        track, reason = tracking.advance(track, fix_at(1 + i, north_km=far))
        assert reason == tracking.JUMP
    track, reason = tracking.advance(track, fix_at(10, north_km=far))
    assert reason is None and track.last == fix_at(10, north_km=far) and track.jumps_in_row == 0
    _, reason = tracking.advance(track, fix_at(14, north_km=far + 0.05))
    assert reason is None  # consistent with the new anchor


# ---------------------------------------------------------------- recent speed


def test_speed_is_the_device_speed_smoothed() -> None:
    track, _ = tracking.advance(Track(), fix_at(0, speed_kmh=20.0))
    assert track.speed_kmh == 20.0
    track, _ = tracking.advance(track, fix_at(4, north_km=0.02, speed_kmh=30.0))
    assert track.speed_kmh == pytest.approx(20.0 + tracking.SPEED_SMOOTHING * 10.0)


def test_speed_is_implied_by_positions_when_the_device_says_nothing() -> None:
    track, _ = tracking.advance(Track(), fix_at(0))
    assert track.speed_kmh is None
    track, _ = tracking.advance(track, fix_at(36, north_km=0.3))  # 0.3 km in 36 s = 30 km/h
    assert track.speed_kmh == pytest.approx(30.0, rel=0.01)


def test_old_speed_is_forgotten_after_a_long_gap() -> None:
    track, _ = tracking.advance(Track(), fix_at(0, speed_kmh=40.0))
    gap = tracking.SPEED_RESET_SECONDS + 1
    track, _ = tracking.advance(track, fix_at(gap, north_km=0.01, speed_kmh=5.0))
    assert track.speed_kmh == 5.0


# ---------------------------------------------------------------- coalescing


def test_coalescing_allows_one_ping_per_interval() -> None:
    interval = limits.PING_MIN_INTERVAL_SECONDS
    assert tracking.coalesce_delay(None, 100.0) == 0.0
    assert tracking.coalesce_delay(100.0, 100.0) == interval
    assert tracking.coalesce_delay(100.0, 100.0 + interval / 2) == pytest.approx(interval / 2)
    assert tracking.coalesce_delay(100.0, 100.0 + interval) == 0.0
    assert tracking.coalesce_delay(100.0, 105.0) == 0.0
    assert tracking.coalesce_delay(100.0, 100.5, interval=1.0) == 0.5


# ---------------------------------------------------------------- ETA


def test_eta_is_distance_over_recent_speed() -> None:
    eta = SpeedEta()
    to_lat = LAT + 15 / KM_PER_DEG_LAT  # ~15 km north
    assert eta.eta_minutes(LAT, LNG, to_lat, LNG, 30.0) == 30
    assert eta.eta_minutes(LAT, LNG, to_lat, LNG, 60.0) == 15


def test_eta_never_assumes_less_than_the_floor_speed() -> None:
    eta = SpeedEta()
    to_lat = LAT + 15 / KM_PER_DEG_LAT
    floor = eta.eta_minutes(LAT, LNG, to_lat, LNG, tracking.ETA_FLOOR_KMH)
    assert floor == 60
    assert eta.eta_minutes(LAT, LNG, to_lat, LNG, None) == floor
    assert eta.eta_minutes(LAT, LNG, to_lat, LNG, 0.0) == floor
    assert eta.eta_minutes(LAT, LNG, to_lat, LNG, 2.0) == floor
    assert SpeedEta(floor_kmh=30.0).eta_minutes(LAT, LNG, to_lat, LNG, None) == 30


def test_eta_is_at_least_one_minute() -> None:
    assert SpeedEta().eta_minutes(LAT, LNG, LAT, LNG, 20.0) == 1
    assert SpeedEta().eta_minutes(LAT, LNG, LAT + 0.001, LNG, 200.0) == 1


def test_an_estimator_is_anything_with_eta_minutes() -> None:
    class Constant:
        def eta_minutes(self, from_lat: float, from_lng: float, to_lat: float, to_lng: float, s: float | None) -> int:
            return 7

    estimator: tracking.EtaEstimator = Constant()
    assert estimator.eta_minutes(0, 0, 1, 1, None) == 7


def test_location_payload_is_the_protocol_shape() -> None:
    fix = Fix(LAT, LNG, NOW + timedelta(milliseconds=5), heading=45.0)
    assert tracking.location_payload("o1", fix, 12) == {
        "orderId": "o1",
        "lat": LAT,
        "lng": LNG,
        "heading": 45.0,
        "etaMinutes": 12,
        "recordedAt": "2026-11-25T12:00:00.005Z",
    }
    assert "heading" not in tracking.location_payload("o1", Fix(LAT, LNG, NOW), 3)
