"""Analytics rollups: keeping them current from the stored events, and reading an overview.

Why rollups and how they stay current (docs/ANALYTICS.md): a 90-day window over a million
orders cannot be aggregated from `orders` and the event logs in 200 ms, so the figures come
from per-hour rollup rows (migration 0007), one set per vendor and one for the marketplace.
`refresh` finds the hours touched by events committed since the last refresh (the event
logs are append-only with a BRIN index on `created_at`) and recomputes those hours whole
from the current rows. Recomputing rather than incrementing makes a refresh idempotent: a
crash mid-refresh, two nodes refreshing or a retried write can never count twice. The
live write path pays nothing (the writer and its stores are untouched); figures lag the
events by at most the refresh interval.

Medians and p90 come from sparse histograms (log-spaced bins about 5% wide, SQL functions
`pocho_analytics_bin` / `pocho_analytics_bin_value`), kept per hour and per UTC day: a
window reads the day rows of its whole UTC days and the hour rows of its two edges. A
recompute adds the difference between its hours' old and new histogram rows to their day
rows, inside the same transaction.

Every lookup of the recompute is an index probe per row of the hours asked for: the LATERAL
subqueries carry `OFFSET 0` so the planner cannot flatten them into hash joins over whole
tables (which it otherwise picks, not knowing how few hours are asked for).

Style: hand-written SQL text (CTEs, FILTER, GROUPING SETS and window functions, which
pypika renders poorly), constants built once at import; functions return plain values or
asyncpg Records and never aggregate in Python.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Final

import asyncpg

MARKETPLACE: Final = uuid.UUID(int=0)  # the scope of marketplace-wide rows
TTFO, ROUNDS, DELIVERY = 1, 2, 3  # histogram metrics
REFRESH_MARGIN: Final = timedelta(seconds=60)  # an event's created_at is its transaction's start
CHUNK_HOURS: Final = 24  # hours recomputed per transaction
_LOCK_KEY: Final = 0x706F63686F_11  # one refresh at a time across nodes
_NIL = "'00000000-0000-0000-0000-000000000000'::uuid"
_PAID = "status NOT IN ('PENDING_PAYMENT', 'CANCELED')"
STATUS_COLUMNS: Final = {
    "PENDING_PAYMENT": "orders_pending_payment",
    "CONFIRMED": "orders_confirmed",
    "PREPARING": "orders_preparing",
    "READY": "orders_ready",
    "PICKED_UP": "orders_picked_up",
    "OUT_FOR_DELIVERY": "orders_out_for_delivery",
    "DELIVERED": "orders_delivered",
    "CANCELED": "orders_canceled",
}
COUNT_COLUMNS: Final = (
    "requests_created",
    "requests_accepted",
    "requests_expired",
    "requests_cancelled",
    "offers_placed",
    "offers_accepted",
    "orders_created",
    "gross_kobo",
    *STATUS_COLUMNS.values(),
)

# ---------------------------------------------------------------- refresh

_TOUCHED_HOURS = """
SELECT DISTINCT hour FROM (
    SELECT date_trunc('hour', r.created_at, 'UTC') AS hour
      FROM negotiation_events e JOIN meal_requests r ON r.id = e.request_id WHERE e.created_at > $1
    UNION ALL
    SELECT date_trunc('hour', o.created_at, 'UTC')
      FROM negotiation_events e JOIN orders o ON o.request_id = e.request_id WHERE e.created_at > $1
    UNION ALL
    SELECT date_trunc('hour', o.created_at, 'UTC')
      FROM order_events e JOIN orders o ON o.id = e.order_id WHERE e.created_at > $1
) t ORDER BY hour
"""

_ALL_HOURS = """
SELECT DISTINCT hour FROM (
    SELECT date_trunc('hour', created_at, 'UTC') AS hour FROM meal_requests
    UNION ALL
    SELECT date_trunc('hour', created_at, 'UTC') FROM orders
) t ORDER BY hour
"""

_HOURS = "WITH h AS (SELECT DISTINCT unnest($1::timestamptz[]) AS hour)"
_IN_HOUR = "{t}.created_at >= h.hour AND {t}.created_at < h.hour + interval '1 hour'"
_ZEROS = ", ".join(["0"] * 10)  # the order columns (count, gross, 8 statuses) of a request part


def _status_counts() -> str:
    return ", ".join(f"count(*) FILTER (WHERE status = '{s}')" for s in STATUS_COLUMNS)


_DELETE_HOURS = tuple(
    f"DELETE FROM {table} WHERE hour = ANY($1::timestamptz[])"
    for table in ("analytics_hourly", "analytics_category_hourly", "analytics_hist_hourly")
)

_INSERT_HOURLY = f"""
{_HOURS},
req AS (
    SELECT r.id, r.status, h.hour FROM h JOIN meal_requests r ON {_IN_HOUR.format(t="r")}
),
off AS (
    SELECT f.vendor_id, f.request_id, f.status, req.status AS request_status, req.hour
      FROM req CROSS JOIN LATERAL (SELECT * FROM offers f WHERE f.request_id = req.id OFFSET 0) f
),
ord AS (
    SELECT o.vendor_id, o.status, o.amount_kobo, h.hour FROM h JOIN orders o ON {_IN_HOUR.format(t="o")}
),
parts AS (
    SELECT {_NIL} AS scope, hour, count(*) AS rc, count(*) FILTER (WHERE status = 'ACCEPTED') AS ra,
           count(*) FILTER (WHERE status = 'EXPIRED') AS re, count(*) FILTER (WHERE status = 'CANCELLED') AS rx,
           0 AS op, 0 AS oa, {_ZEROS}
      FROM req GROUP BY hour
    UNION ALL
    SELECT vendor_id, hour, count(DISTINCT request_id), count(DISTINCT request_id) FILTER (WHERE status = 'ACCEPTED'),
           count(DISTINCT request_id) FILTER (WHERE request_status = 'EXPIRED'),
           count(DISTINCT request_id) FILTER (WHERE request_status = 'CANCELLED'),
           count(*), count(*) FILTER (WHERE status = 'ACCEPTED'), {_ZEROS}
      FROM off GROUP BY vendor_id, hour
    UNION ALL
    SELECT {_NIL}, hour, 0, 0, 0, 0, count(*), count(*) FILTER (WHERE status = 'ACCEPTED'), {_ZEROS}
      FROM off GROUP BY hour
    UNION ALL
    SELECT coalesce(vendor_id, {_NIL}), hour, 0, 0, 0, 0, 0, 0, count(*),
           coalesce(sum(amount_kobo) FILTER (WHERE {_PAID}), 0), {_status_counts()}
      FROM ord GROUP BY GROUPING SETS ((vendor_id, hour), (hour))
)
INSERT INTO analytics_hourly (scope, hour, {", ".join(COUNT_COLUMNS)})
SELECT scope, hour, {", ".join(f"sum(c{i})" for i in range(len(COUNT_COLUMNS)))}
  FROM parts AS p(scope, hour, {", ".join(f"c{i}" for i in range(len(COUNT_COLUMNS)))})
 GROUP BY scope, hour
"""

_INSERT_CATEGORIES = f"""
{_HOURS},
ord AS (
    SELECT o.vendor_id, o.status, o.amount_kobo, r.category, h.hour
      FROM h JOIN orders o ON {_IN_HOUR.format(t="o")}
      CROSS JOIN LATERAL (SELECT category FROM meal_requests r WHERE r.id = o.request_id OFFSET 0) r
)
INSERT INTO analytics_category_hourly (scope, hour, category, orders, gross_kobo)
SELECT coalesce(vendor_id, {_NIL}), hour, category, count(*), coalesce(sum(amount_kobo) FILTER (WHERE {_PAID}), 0)
  FROM ord GROUP BY GROUPING SETS ((vendor_id, hour, category), (hour, category))
"""

_INSERT_HIST = f"""
{_HOURS},
req AS (
    SELECT r.id, r.created_at, r.accepted_offer_id, h.hour FROM h JOIN meal_requests r ON {_IN_HOUR.format(t="r")}
),
firsts AS (
    SELECT req.hour, req.id, f.vendor_id, min(f.created_at) - req.created_at AS wait
      FROM req CROSS JOIN LATERAL (SELECT vendor_id, created_at FROM offers f WHERE f.request_id = req.id OFFSET 0) f
     GROUP BY req.hour, req.id, req.created_at, f.vendor_id
),
delivered AS MATERIALIZED (
    SELECT o.id, o.vendor_id, coalesce(o.confirmed_at, o.created_at) AS paid_at, h.hour
      FROM h JOIN orders o ON {_IN_HOUR.format(t="o")} AND o.status = 'DELIVERED'
),
samples AS (
    SELECT {_NIL} AS scope, hour, {TTFO} AS metric, pocho_analytics_bin(extract(epoch FROM min(wait))) AS bin
      FROM firsts GROUP BY hour, id
    UNION ALL
    SELECT vendor_id, hour, {TTFO}, pocho_analytics_bin(extract(epoch FROM wait)) FROM firsts
    UNION ALL
    SELECT s.scope, req.hour, {ROUNDS}, f.round
      FROM req CROSS JOIN LATERAL (SELECT round, vendor_id FROM offers f WHERE f.id = req.accepted_offer_id OFFSET 0) f
      CROSS JOIN LATERAL (VALUES ({_NIL}), (f.vendor_id)) AS s(scope)
    UNION ALL
    SELECT s.scope, o.hour, {DELIVERY},
           pocho_analytics_bin(extract(epoch FROM (e.payload -> 'event' ->> 'at')::timestamptz - o.paid_at))
      FROM delivered o
      CROSS JOIN LATERAL (
          SELECT payload FROM order_events e
           WHERE e.order_id = o.id AND e.kind = 'status' AND e.payload -> 'event' ->> 'status' = 'DELIVERED' OFFSET 0
      ) e
      CROSS JOIN LATERAL (VALUES ({_NIL}), (o.vendor_id)) AS s(scope)
)
INSERT INTO analytics_hist_hourly (scope, hour, metric, bin, n)
SELECT scope, hour, metric, bin, count(*) FROM samples GROUP BY scope, hour, metric, bin
"""

# The day rows are kept equal to the sum of their hours' rows: a recompute notes what the hours
# held (a temporary table dropped at commit), rebuilds them, and adds the difference to the
# day rows in the same transaction. Most bins of a recomputed hour do not change, so only the
# few that did are written: a refresh costs what its hours hold, not what their days hold.
# Bins that drop to zero stay (reads skip them).
_HOURS_BY_DAY = """
SELECT scope, (hour AT TIME ZONE 'UTC')::date AS day, metric, bin, sum(n) AS n
  FROM analytics_hist_hourly WHERE hour = ANY($1::timestamptz[]) GROUP BY 1, 2, 3, 4
"""
_NOTE_OLD = f"CREATE TEMPORARY TABLE analytics_old_bins ON COMMIT DROP AS {_HOURS_BY_DAY}"
_ADD_DIFFERENCE = f"""
INSERT INTO analytics_hist_daily (scope, day, metric, bin, n)
SELECT scope, day, metric, bin, sum(n) FROM (
    SELECT scope, day, metric, bin, -n AS n FROM analytics_old_bins
    UNION ALL
    {_HOURS_BY_DAY}
) x GROUP BY scope, day, metric, bin HAVING sum(n) <> 0
ON CONFLICT (scope, day, metric, bin) DO UPDATE SET n = analytics_hist_daily.n + EXCLUDED.n
"""

# These statements touch few rows, but their estimated cost is high enough for PostgreSQL to JIT
# compile them and to start parallel workers, each costing more (JIT 0.1-1 s, workers several
# ms on a busy machine) than running them. And they are planned for their parameters every
# time: a generic plan (what a prepared statement gets after five runs) cannot tell the
# marketplace's thousands of rows from a small vendor's dozens.
_SMALL = (
    "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL plan_cache_mode = force_custom_plan"
)
_WATERMARK = "SELECT refreshed_at FROM analytics_refresh"
_SET_WATERMARK = """
INSERT INTO analytics_refresh (id, refreshed_at) VALUES (true, $1)
ON CONFLICT (id) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at
"""


async def recompute(conn: asyncpg.Connection, hours: list[datetime]) -> None:
    """Rebuild every rollup row of `hours` (UTC hour starts), and their share of the day rows,
    in chunks of CHUNK_HOURS per transaction."""
    for i in range(0, len(hours), CHUNK_HOURS):
        chunk = hours[i : i + CHUNK_HOURS]
        async with conn.transaction():
            await conn.execute(_SMALL)
            await conn.execute(_NOTE_OLD, chunk)
            for sql in _DELETE_HOURS:
                await conn.execute(sql, chunk)
            for sql in (_INSERT_HOURLY, _INSERT_CATEGORIES, _INSERT_HIST):
                await conn.execute(sql, chunk)
            await conn.execute(_ADD_DIFFERENCE, chunk)


async def refresh(pool: asyncpg.Pool, *, full: bool = False) -> int:
    """Bring the rollups up to the committed events; return how many hours were recomputed.

    The watermark is the start of the previous refresh; events are read from REFRESH_MARGIN
    before it, so a transaction that began before the watermark but committed after it (its
    rows carry its start time) is still seen. `full` rebuilds every hour with data (after a
    bulk load). A session advisory lock keeps nodes from refreshing at the same time."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            started: datetime = await conn.fetchval("SELECT now()")
            last: datetime | None = None if full else await conn.fetchval(_WATERMARK)
            async with conn.transaction(readonly=True):
                await conn.execute(_SMALL)
                if last is None:  # everything (cheaper than reading every event since 1970)
                    rows = await conn.fetch(_ALL_HOURS)
                else:
                    rows = await conn.fetch(_TOUCHED_HOURS, last - REFRESH_MARGIN)
            hours = [r["hour"] for r in rows]
            await recompute(conn, hours)
            await conn.execute(_SET_WATERMARK, started)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return len(hours)


# ---------------------------------------------------------------- reads

# $1 scope, $2/$3 the window [from, to) as instants, $4 the time zone, $5/$6 its first and last
# local day. One row per local day (zeros where nothing happened), then the totals (day NULL).
_DAYS = f"""
WITH rows AS (
    SELECT (hour AT TIME ZONE $4)::date AS day, {", ".join(COUNT_COLUMNS)}
      FROM analytics_hourly WHERE scope = $1 AND hour >= $2 AND hour < $3
),
per_day AS (
    SELECT day, {", ".join(f"sum({c})::bigint AS {c}" for c in COUNT_COLUMNS)}
      FROM rows GROUP BY GROUPING SETS ((day), ())
)
SELECT d.day, {", ".join(f"coalesce(p.{c}, 0) AS {c}" for c in COUNT_COLUMNS)}
  FROM (SELECT generate_series($5::date, $6::date, interval '1 day')::date AS day) d
  LEFT JOIN per_day p ON p.day = d.day
UNION ALL
SELECT NULL, {", ".join(f"coalesce({c}, 0)" for c in COUNT_COLUMNS)} FROM per_day WHERE day IS NULL
ORDER BY 1 NULLS FIRST
"""

_TOP_CATEGORIES = """
SELECT category, sum(orders)::bigint AS orders, sum(gross_kobo)::bigint AS gross_kobo
  FROM analytics_category_hourly WHERE scope = $1 AND hour >= $2 AND hour < $3
 GROUP BY category ORDER BY 2 DESC, 3 DESC, category LIMIT $4
"""

# $1 scope, $2/$3 the window, $4/$5 its whole UTC days [first, end) read from the day rows,
# $6/$7 the same days as instants (their hours are not read again). Nearest-rank quantiles.
_QUANTILES = f"""
WITH bins AS (
    SELECT metric, bin, sum(n) AS n FROM (
        SELECT metric, bin, n FROM analytics_hist_daily WHERE scope = $1 AND day >= $4 AND day < $5 AND n > 0
        UNION ALL
        SELECT metric, bin, n FROM analytics_hist_hourly
         WHERE scope = $1 AND hour >= $2 AND hour < $3 AND NOT (hour >= $6 AND hour < $7)
    ) x GROUP BY metric, bin
),
cum AS (
    SELECT metric, bin, sum(n) OVER (PARTITION BY metric ORDER BY bin) AS upto,
           sum(n) OVER (PARTITION BY metric) AS total
      FROM bins
)
SELECT metric, total::bigint AS samples,
       CASE WHEN metric = {ROUNDS} THEN p50::double precision ELSE pocho_analytics_bin_value(p50) END AS p50,
       CASE WHEN metric = {ROUNDS} THEN p90::double precision ELSE pocho_analytics_bin_value(p90) END AS p90
  FROM (
    SELECT metric, total, min(bin) FILTER (WHERE upto >= ceil(total * 0.5)) AS p50,
           min(bin) FILTER (WHERE upto >= ceil(total * 0.9)) AS p90
      FROM cum GROUP BY metric, total
  ) q
"""


async def overview(
    pool: asyncpg.Pool, scope: uuid.UUID, start: datetime, end: datetime, tz: str, first: date, last: date, top: int
) -> tuple[list[asyncpg.Record], list[asyncpg.Record], list[asyncpg.Record]]:
    """(per-day rows with the totals first, top categories, quantile bins) of one scope over
    [start, end) whose local days are first..last in `tz`."""
    day0 = start.astimezone(UTC)
    first_full = day0.date() if day0.time() == datetime.min.time() else day0.date() + timedelta(days=1)
    end_full = end.astimezone(UTC).date()  # exclusive: the UTC day holding `end` is partial (or starts there)
    if end_full < first_full:
        end_full = first_full
    full_from = datetime.combine(first_full, datetime.min.time(), UTC)
    full_to = datetime.combine(end_full, datetime.min.time(), UTC)
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(_SMALL)
        days = await conn.fetch(_DAYS, scope, start, end, tz, first, last)
        cats = await conn.fetch(_TOP_CATEGORIES, scope, start, end, top)
        quantiles = await conn.fetch(_QUANTILES, scope, start, end, first_full, end_full, full_from, full_to)
    return days, cats, quantiles


async def refreshed_at(pool: asyncpg.Pool) -> datetime | None:
    """Up to when the rollups hold the committed events (None before the first refresh)."""
    value: datetime | None = await pool.fetchval(_WATERMARK)
    return value
