"""Pure rules for rider location pings: validation, plausibility, coalescing, speed and ETA.

A ping becomes a `Fix` only through `validate` (finite numbers in range, `recordedAt` an
aware time neither too far ahead of the server clock nor too old), so every later rule can
trust its fields. `advance` decides whether a fix moves the rider's `Track`: a fix not newer
than the last accepted one is `stale`, and one that implies a speed above
`PLAUSIBLE_SPEED_KMH` is a `jump` (GPS glitch or spoofing); both are dropped and counted by the
caller, and the track is unchanged. `coalesce_delay` is the rate policy: a rider's pings are
handled at most every `PING_MIN_INTERVAL_SECONDS`, the newest one waiting for its turn.

ETAs go through the `EtaEstimator` protocol so a smarter service (the AI ETA client) can
replace `SpeedEta`, the default: great-circle distance over recent speed, never slower than a
floor speed (a rider waiting at a light is not an hour away).

No I/O and no clock reads: the caller passes `now`. Stdlib and engine modules only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from engine.clock import iso
from engine.errors import EngineError
from engine.geometry import distance_km
from engine.limits import (
    PING_FUTURE_SKEW,
    PING_MAX_AGE,
    PING_MIN_INTERVAL_SECONDS,
    PLAUSIBLE_SPEED_KMH,
    RIDER_ACCURACY_MAX_M,
    RIDER_HEADING_MAX,
    RIDER_SPEED_MAX_KMH,
)

# Why `advance` dropped a fix (metric labels and the ping ack's `dropped`).
JUMP: Final = "jump"
STALE: Final = "stale"

ETA_FLOOR_KMH: Final = 15.0  # the slowest speed an ETA assumes (traffic, lights, a parked rider)
SPEED_SMOOTHING: Final = 0.3  # weight of the newest sample in the recent-speed average
SPEED_RESET_SECONDS: Final = 120.0  # after a gap this long, the old average says nothing
DEFAULT_ACCURACY_M: Final = 20.0  # assumed GPS error of a fix that does not report one
MAX_SLACK_KM: Final = 1.0  # at most this much of a move is put down to GPS error
JUMPS_BEFORE_REANCHOR: Final = 5  # after this many jumps in a row the old anchor was the glitch


@dataclass(frozen=True, slots=True)
class Fix:
    """One validated position report."""

    lat: float
    lng: float
    recorded_at: datetime
    heading: float | None = None
    speed_kmh: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class Track:
    """What a rider's pings have established: the last accepted fix and the recent speed."""

    last: Fix | None = None
    speed_kmh: float | None = None  # smoothed; None until a speed is known
    jumps_in_row: int = 0


# ---------------------------------------------------------------- validation


def _number(value: object, lo: float, hi: float) -> str | None:
    """None when `value` is a finite number in [lo, hi] (bool is an int to Python, not to us)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "must be a finite number"
    return None if lo <= value <= hi else f"must be between {lo:g} and {hi:g}"


def validate(
    lat: object,
    lng: object,
    recorded_at: object,
    now: datetime,
    heading: object = None,
    speed_kmh: object = None,
    accuracy_m: object = None,
) -> Fix:
    """A `Fix` from a ping's fields, or EngineError `invalid` naming every bad wire field.

    The socket schema checks types and ranges first; this checks them again (callers that
    skip the schema, NaN and infinities) plus what a schema cannot: the time window."""
    errors: dict[str, str | None] = {
        "lat": _number(lat, -90.0, 90.0),
        "lng": _number(lng, -180.0, 180.0),
        "heading": None if heading is None else _number(heading, 0.0, RIDER_HEADING_MAX),
        "speedKmh": None if speed_kmh is None else _number(speed_kmh, 0.0, RIDER_SPEED_MAX_KMH),
        "accuracyM": None if accuracy_m is None else _number(accuracy_m, 0.0, RIDER_ACCURACY_MAX_M),
    }
    if not isinstance(recorded_at, datetime) or recorded_at.tzinfo is None:
        errors["recordedAt"] = "must be an ISO-8601 time with a timezone"
    elif recorded_at > now + PING_FUTURE_SKEW:
        errors["recordedAt"] = "must not be in the future"
    elif recorded_at < now - PING_MAX_AGE:
        errors["recordedAt"] = f"must not be older than {int(PING_MAX_AGE.total_seconds() // 60)} minutes"
    bad = {k: v for k, v in errors.items() if v is not None}
    if bad:
        raise EngineError("invalid", "invalid location: " + ", ".join(bad), bad)
    assert isinstance(recorded_at, datetime)  # checked above
    return Fix(_float(lat), _float(lng), recorded_at, _opt(heading), _opt(speed_kmh), _opt(accuracy_m))


def _float(value: object) -> float:
    assert isinstance(value, int | float)  # `validate` checked it
    return float(value)


def _opt(value: object) -> float | None:
    return None if value is None else _float(value)


# ---------------------------------------------------------------- plausibility and speed


def _slack_km(a: Fix, b: Fix) -> float:
    """How much of a move two fixes' own inaccuracy can explain."""
    err_m = (a.accuracy_m if a.accuracy_m is not None else DEFAULT_ACCURACY_M) + (
        b.accuracy_m if b.accuracy_m is not None else DEFAULT_ACCURACY_M
    )
    return min(err_m / 1000.0, MAX_SLACK_KM)


def implied_speed_kmh(a: Fix, b: Fix) -> float:
    """Speed needed to get from `a` to `b` in the time between them, beyond GPS error
    (inf when `b` is not later than `a` but far from it)."""
    seconds = (b.recorded_at - a.recorded_at).total_seconds()
    excess = max(distance_km(a.lat, a.lng, b.lat, b.lng) - _slack_km(a, b), 0.0)
    if excess == 0.0:
        return 0.0
    return math.inf if seconds <= 0 else excess / (seconds / 3600.0)


def _smoothed(track: Track, fix: Fix) -> float | None:
    last = track.last
    sample = fix.speed_kmh
    seconds = math.inf if last is None else (fix.recorded_at - last.recorded_at).total_seconds()
    if sample is None and last is not None and seconds > 0:
        sample = distance_km(last.lat, last.lng, fix.lat, fix.lng) / (seconds / 3600.0)
    if sample is None:
        return track.speed_kmh
    if track.speed_kmh is None or seconds > SPEED_RESET_SECONDS:
        return sample
    return track.speed_kmh + SPEED_SMOOTHING * (sample - track.speed_kmh)


def advance(track: Track, fix: Fix) -> tuple[Track, str | None]:
    """The track after `fix`, and None; or the unchanged track (bar the jump count) and why
    the fix was dropped (`STALE`, `JUMP`).

    A lone glitch is dropped; but when `JUMPS_BEFORE_REANCHOR` fixes in a row were all
    "jumps", the last accepted fix was the glitch, and the next one becomes the new anchor."""
    last = track.last
    if last is not None:
        if fix.recorded_at <= last.recorded_at:
            return track, STALE
        if implied_speed_kmh(last, fix) > PLAUSIBLE_SPEED_KMH and track.jumps_in_row < JUMPS_BEFORE_REANCHOR:
            return Track(last, track.speed_kmh, track.jumps_in_row + 1), JUMP
        if track.jumps_in_row >= JUMPS_BEFORE_REANCHOR:
            return Track(fix, fix.speed_kmh, 0), None  # a new anchor: the old speed meant nothing
    return Track(fix, _smoothed(track, fix), 0), None


# ---------------------------------------------------------------- coalescing


def coalesce_delay(last_handled: float | None, now: float, interval: float = PING_MIN_INTERVAL_SECONDS) -> float:
    """Seconds until a rider's next ping may be handled (0: handle it now). Times are monotonic
    seconds of the server: arrival, not `recordedAt`, decides the cost a rider imposes."""
    if last_handled is None:
        return 0.0
    return max(last_handled + interval - now, 0.0)


# ---------------------------------------------------------------- ETA


class EtaEstimator(Protocol):
    """Minutes from a position to a destination; the AI ETA service implements it later."""

    def eta_minutes(
        self, from_lat: float, from_lng: float, to_lat: float, to_lng: float, recent_speed_kmh: float | None
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class SpeedEta:
    """Great-circle distance over the recent speed, at least `floor_kmh`; never under 1 minute."""

    floor_kmh: float = ETA_FLOOR_KMH

    def eta_minutes(
        self, from_lat: float, from_lng: float, to_lat: float, to_lng: float, recent_speed_kmh: float | None
    ) -> int:
        km = distance_km(from_lat, from_lng, to_lat, to_lng)
        speed = max(recent_speed_kmh or 0.0, self.floor_kmh)
        return max(1, math.ceil(km / speed * 60.0))


def location_payload(order_id: str, fix: Fix, eta_minutes: int) -> dict[str, Any]:
    """PROTOCOL's `rider:location` {orderId, lat, lng, heading?, etaMinutes, recordedAt}."""
    out: dict[str, Any] = {"orderId": order_id, "lat": fix.lat, "lng": fix.lng}
    if fix.heading is not None:
        out["heading"] = fix.heading
    out["etaMinutes"] = eta_minutes
    out["recordedAt"] = iso(fix.recorded_at)
    return out
