"""Times the analytics overview on the data set of `scripts.gen_analytics` (run that first).

Reported, per scope (the marketplace, the busiest vendor, a median vendor) and window (90,
30 and 7 local days ending today in Africa/Lagos): the time of `persistence.analytics.overview`
plus the watermark read, i.e. every SQL statement GET /api/v1/analytics/overview runs, over
`--runs` runs after `--warmup` runs: min, p50, p95, max in milliseconds. Then the refresh
loop's cost: one round with nothing new, and one after `--fresh` new orders (with their
requests, offers and events) were committed in the current hour.

    python -m scripts.bench_analytics
    python -m scripts.bench_analytics --runs 50

Uses BENCH_DATABASE_URL / TEST_DATABASE_URL like the generator (database pocho_analytics_bench).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from persistence import analytics
from persistence.db import create_pool
from scripts.gen_analytics import _COLUMNS, _TABLES, Generator, admin_url, bench_url

TZ = ZoneInfo("Africa/Lagos")


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return f"min {s[0]:6.1f}  p50 {statistics.median(s):6.1f}  p95 {p95:6.1f}  max {s[-1]:6.1f} ms"


async def _time_overview(pool: asyncpg.Pool, scope: uuid.UUID, days: int, runs: int, warmup: int) -> list[float]:
    last = datetime.now(TZ).date()
    first = last - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), TZ)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), TZ)
    samples = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        await analytics.overview(pool, scope, start, end, TZ.key, first, last, 5)
        await analytics.refreshed_at(pool)
        if i >= warmup:
            samples.append((time.perf_counter() - t) * 1000)
    return samples


class _Now(Generator):
    """New orders in the current hour (what the refresh loop sees in steady state)."""

    def _when(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.rng.randrange(60, 600))


async def _fresh_orders(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        customers = [r["id"] for r in await conn.fetch("SELECT id FROM users WHERE role = 'CUSTOMER' LIMIT 1000")]
        vendors = [r["id"] for r in await conn.fetch("SELECT id FROM vendors ORDER BY random() LIMIT 200")]
        gen = _Now(count, 1, 0.3, 1, 1, random.randrange(1 << 30))
        gen.customer_ids, gen.vendor_ids = customers, vendors
        gen.vendor_cum = [(i + 1) / len(vendors) for i in range(len(vendors))]
        now = datetime.now(UTC)  # event rows carry their commit time, as the writer's do
        async with conn.transaction():
            for key, records in gen.chunk(count).items():
                if key in _TABLES:
                    records = [(*r[:-1], now) for r in records]
                await conn.copy_records_to_table(_TABLES.get(key, key), records=records, columns=_COLUMNS[key])
    finally:
        await conn.close()


async def bench(args: argparse.Namespace) -> None:
    url = bench_url(admin_url())
    pool = await create_pool(url, size=2)
    try:
        counts = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM order_events) AS order_events,"
            " (SELECT count(*) FROM negotiation_events) AS negotiation_events,"
            " (SELECT count(*) FROM meal_requests) AS requests, (SELECT count(*) FROM offers) AS offers"
        )
        print("data:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        ranked = await pool.fetch("SELECT vendor_id, count(*) AS n FROM orders GROUP BY vendor_id ORDER BY n DESC")
        scopes = [
            ("marketplace", analytics.MARKETPLACE, int(counts["orders"])),
            ("busiest vendor", ranked[0]["vendor_id"], ranked[0]["n"]),
            ("median vendor", ranked[len(ranked) // 2]["vendor_id"], ranked[len(ranked) // 2]["n"]),
        ]
        for name, scope, n in scopes:
            for days in (90, 30, 7):
                samples = await _time_overview(pool, scope, days, args.runs, args.warmup)
                print(f"overview {name:15s} ({n:>9,} orders) {days:2d} days: {_ms(samples)}")
        t = time.perf_counter()
        hours = await analytics.refresh(pool)
        print(f"refresh, nothing new: {(time.perf_counter() - t) * 1000:.1f} ms ({hours} hours)")
        await _fresh_orders(url, args.fresh)
        t = time.perf_counter()
        hours = await analytics.refresh(pool)
        print(f"refresh after {args.fresh} new orders: {(time.perf_counter() - t) * 1000:.1f} ms ({hours} hours)")
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fresh", type=int, default=500)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
