"""Keeps the analytics rollups current: one supervised loop refreshing them every
`analytics_refresh_seconds` (persistence.analytics.refresh explains how and why)."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from prometheus_client import Counter, Histogram

from engine.runtime.metrics import REGISTRY
from persistence import analytics as analytics_db

log = logging.getLogger("pocho.analytics")

REFRESH_SECONDS = Histogram(
    "pocho_analytics_refresh_seconds",
    "Time of one analytics rollup refresh",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
)
REFRESH_HOURS = Counter("pocho_analytics_hours_recomputed_total", "Rollup hours recomputed", registry=REGISTRY)
REFRESH_FAILURES = Counter("pocho_analytics_refresh_failures_total", "Failed rollup refreshes", registry=REGISTRY)


class AnalyticsService:
    def __init__(self, pool: asyncpg.Pool, interval_seconds: float) -> None:
        self.pool = pool
        self.interval = interval_seconds

    async def refresh(self, *, full: bool = False) -> int:
        """Recompute the rollup hours touched since the last refresh (all of them with `full`)."""
        started = time.perf_counter()
        hours = await analytics_db.refresh(self.pool, full=full)
        REFRESH_SECONDS.observe(time.perf_counter() - started)
        REFRESH_HOURS.inc(hours)
        return hours

    async def run(self) -> None:
        """The refresh loop (owned by the node's supervisor); storage trouble skips a round."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                REFRESH_FAILURES.inc()
                log.warning("analytics refresh failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.interval)
