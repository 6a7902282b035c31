"""Times the analytics overview on the data set of `scripts.gen_analytics` (run that first).

Reported, per scope (the marketplace, the busiest vendor, a median vendor) and window (90,
30 and 7 local days ending today in Africa/Lagos): the time of `persistence.analytics.overview`
plus the watermark read, i.e. every SQL statement GET /api/v1/analytics/overview runs, over
`--runs` runs after `--warmup` runs: min, p50, p95, max in milliseconds. Then the refresh
loop's cost: three rounds with nothing new, then three each after `--fresh` new orders (with
their requests, offers and events) were committed in the current hour. Last, what the indexes the
refresh needs cost the write path (`--write-cost`): rows inserted as the group-commit writer
does (executemany, 2,000 rows per transaction) into copies of `negotiation_events` and
`meal_requests` with and without those indexes, alternating, median microseconds per row.

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
        for label in ("first", "second", "third"):
            t = time.perf_counter()
            hours = await analytics.refresh(pool)
            took = (time.perf_counter() - t) * 1000
            print(f"refresh, nothing new ({label}): {took:.1f} ms ({hours} hours recomputed)")
        for _ in range(3):
            await _fresh_orders(url, args.fresh)
            t = time.perf_counter()
            hours = await analytics.refresh(pool)
            took = (time.perf_counter() - t) * 1000
            print(f"refresh after {args.fresh} new orders: {took:.1f} ms ({hours} hours recomputed)")
        if args.write_cost:
            async with pool.acquire() as conn:
                await _write_cost(conn)
    finally:
        await pool.close()


async def _write_cost(conn: asyncpg.Connection, rounds: int = 5, rows: int = 20_000, batch: int = 2000) -> None:
    """Per-row insert cost with and without the analytics indexes (BRIN on event time, B-tree
    on request creation time), on scratch copies of the tables."""
    setups = {
        "negotiation_events": "CREATE INDEX ON {t} USING brin (created_at)",
        "meal_requests": "CREATE INDEX ON {t} (created_at)",
    }
    now = datetime.now(UTC)
    make = {
        "negotiation_events": lambda i: (uuid.uuid4(), 1, "offer:new", '{"k":1}', "[]", now),
        "meal_requests": lambda i: (
            uuid.uuid4(), uuid.uuid4(), "suya", 1000, 2000, 6.5, 3.4, "x", "OPEN", now, 10, 0, 0, now, now
        ),
    }  # fmt: skip
    cols = {
        "negotiation_events": ("request_id", "seq", "kind", "payload", "targets", "created_at"),
        "meal_requests": (
            "id", "customer_id", "category", "budget_min_kobo", "budget_max_kobo", "delivery_lat", "delivery_lng",
            "address_line", "status", "expires_at", "max_vendor_offers", "offer_count", "seq", "created_at",
            "updated_at",
        ),
    }  # fmt: skip
    for table, index in setups.items():
        times: dict[str, list[float]] = {"without": [], "with": []}
        for variant in ("without", "with"):
            t = f"_bench_{table}_{variant}"
            await conn.execute(f"DROP TABLE IF EXISTS {t}")
            await conn.execute(f"CREATE TABLE {t} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            pk = "request_id, seq" if table == "negotiation_events" else "id"
            await conn.execute(f"ALTER TABLE {t} ADD PRIMARY KEY ({pk})")
            if table == "meal_requests":
                await conn.execute(f"CREATE INDEX ON {t} (expires_at) WHERE status = 'OPEN'")
                await conn.execute(f"CREATE INDEX ON {t} (customer_id, created_at DESC)")
                await conn.execute(f"CREATE INDEX ON {t} (status, created_at DESC)")
            if variant == "with":
                await conn.execute(index.format(t=t))
        sql = {
            v: f"INSERT INTO _bench_{table}_{v} ({', '.join(cols[table])}) "
            f"VALUES ({', '.join(f'${i + 1}' for i in range(len(cols[table])))})"
            for v in times
        }
        for _ in range(rounds):
            for variant in ("without", "with"):
                records = [make[table](i) for i in range(rows)]
                started = time.perf_counter()
                for i in range(0, rows, batch):
                    async with conn.transaction():
                        await conn.executemany(sql[variant], records[i : i + batch])
                times[variant].append((time.perf_counter() - started) / rows * 1e6)
        for variant in times:
            await conn.execute(f"DROP TABLE _bench_{table}_{variant}")
        a, b = statistics.median(times["without"]), statistics.median(times["with"])
        print(f"insert into {table}: {a:.1f} us/row without, {b:.1f} us/row with the analytics index ({b / a:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fresh", type=int, default=500)
    parser.add_argument("--write-cost", action="store_true", help="also time inserts with and without the indexes")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
