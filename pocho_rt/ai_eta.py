"""The AI ETA as an `engine.tracking.EtaEstimator` that never waits.

The rider actor asks for an ETA synchronously inside its turn, for every accepted ping of a
rider carrying an order, so the ML service cannot be called there. Instead:

- `eta_minutes` (in the actor's turn) notes the trip as wanted (keyed by its drop-off
  point, the newest position wins) and answers from the cache: the latest AI estimate for
  that drop-off, if it is at most `fresh_seconds` old and was computed from within
  `MAX_DRIFT_KM` of where the rider is now, less the minutes elapsed since; otherwise the
  built-in `SpeedEta`.
- `run` (a supervised loop) calls the ETA service every `refresh_seconds` for the trips
  wanted since the last round, a bounded number at a time, each call under the client's
  timeout and breaker, and stores the answers.

So the first ping of a trip, any ping while the service is slow, failing or its breaker
is open, and any ping after the rider moved away from the estimate's origin get SpeedEta:
the live flow never waits on the ML service and never fails because of it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter

from adapters.ai.client import AiUnavailable
from adapters.ai.services import EtaClient, EtaQuery, Point
from engine.geometry import distance_km
from engine.limits import AI_ETA_TRACKED_MAX
from engine.runtime.metrics import REGISTRY
from engine.tracking import EtaEstimator, SpeedEta

ETAS = Counter(
    "pocho_ai_eta_answers_total", "rider:location ETAs by source (ai, builtin)", ["source"], registry=REGISTRY
)
_FROM_AI = ETAS.labels("ai")
_BUILTIN = ETAS.labels("builtin")
MAX_DRIFT_KM: Final = 0.5  # an estimate made farther than this from the rider's position is not used
_CONCURRENCY: Final = 16  # ETA calls in flight at once per refresh round

_Key = tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Wanted:
    from_lat: float
    from_lng: float
    to_lat: float
    to_lng: float
    speed_kmh: float | None


@dataclass(frozen=True, slots=True)
class _Estimate:
    origin_lat: float
    origin_lng: float
    minutes: float
    at: float  # monotonic seconds


class AiEta:
    def __init__(
        self,
        client: EtaClient,
        *,
        refresh_seconds: float,
        fresh_seconds: float,
        fallback: EtaEstimator | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = AI_ETA_TRACKED_MAX,
    ) -> None:
        self.client = client
        self.refresh_seconds = refresh_seconds
        self.fresh_seconds = fresh_seconds
        self.fallback: EtaEstimator = fallback or SpeedEta()
        self._clock = clock
        self._max = max_tracked
        self._wanted: dict[_Key, _Wanted] = {}
        self._cache: dict[_Key, _Estimate] = {}

    # ---------------------------------------------------------------- in the rider actor's turn

    def eta_minutes(
        self, from_lat: float, from_lng: float, to_lat: float, to_lng: float, recent_speed_kmh: float | None
    ) -> int:
        key = (round(to_lat, 5), round(to_lng, 5))
        if key in self._wanted or len(self._wanted) < self._max:
            self._wanted[key] = _Wanted(from_lat, from_lng, to_lat, to_lng, recent_speed_kmh)
        est = self._cache.get(key)
        if est is not None:
            age = self._clock() - est.at
            if (
                age <= self.fresh_seconds
                and distance_km(est.origin_lat, est.origin_lng, from_lat, from_lng) <= MAX_DRIFT_KM
            ):
                _FROM_AI.inc()
                return max(1, math.ceil(est.minutes - age / 60.0))
        _BUILTIN.inc()
        return self.fallback.eta_minutes(from_lat, from_lng, to_lat, to_lng, recent_speed_kmh)

    # ---------------------------------------------------------------- the refresh loop

    async def refresh(self) -> int:
        """One round: ask the service about every trip wanted since the last round; return how
        many answers were stored. Estimates past their freshness are dropped."""
        wanted, self._wanted = self._wanted, {}
        gate = asyncio.Semaphore(_CONCURRENCY)
        stored = 0

        async def one(key: _Key, w: _Wanted) -> None:
            nonlocal stored
            async with gate:
                query = EtaQuery(Point(w.from_lat, w.from_lng), Point(w.to_lat, w.to_lng), w.speed_kmh)
                try:
                    answer = await self.client.eta(query)
                except AiUnavailable:
                    return
                self._cache[key] = _Estimate(w.from_lat, w.from_lng, answer.eta_minutes, self._clock())
                stored += 1

        await asyncio.gather(*(one(k, w) for k, w in wanted.items()))
        now = self._clock()
        for key in [k for k, e in self._cache.items() if now - e.at > self.fresh_seconds]:
            del self._cache[key]
        return stored

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_seconds)
