"""Analytics data set: N orders (default 1,000,000) with their requests, offers and events,
written with binary COPY into a scratch database, then the rollups built from them.

Shape (seeded, reproducible): the orders are spread over the `--days` (default 90) days
before now, busier in the evening, written in time order (as a live system writes them);
for every accepted request there are `--extra` more that expired or were cancelled; each
request got 1-4 offers from vendors drawn with a Zipf-like skew (a few big vendors, a long
tail) and 0-3 counter rounds; orders end DELIVERED (80%), CANCELED (8%) or still in an
earlier status, each status change an `order_events` row. Foreign-key triggers are off
while loading (session_replication_role = replica: the rows are consistent by
construction), so run it as a superuser.

    python -m scripts.gen_analytics                   # 1M orders into pocho_analytics_bench
    python -m scripts.gen_analytics --orders 100000   # smaller

Uses BENCH_DATABASE_URL, else TEST_DATABASE_URL (postgresql://postgres@127.0.0.1:5432/postgres):
the scratch database `pocho_analytics_bench` on that server is dropped and created again.
Never point it at a database you care about. Time it with `python -m scripts.bench_analytics`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from persistence import analytics
from persistence.migrate import migrate

DB_NAME = "pocho_analytics_bench"
CATEGORIES = ("nigerian", "suya", "pizza", "shawarma", "chinese", "grills", "pastries", "soups", "rice", "vegan")
_HOUR_WEIGHTS = [1, 1, 1, 1, 1, 1, 2, 3, 4, 4, 4, 6, 8, 7, 5, 4, 5, 7, 10, 10, 8, 5, 3, 2]
_PASSWORD = "$argon2id$v=19$m=65536,t=3,p=4$bench$bench"  # never used to log in
CHUNK = 20_000  # requests per COPY round


def admin_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def bench_url(base: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path="/" + DB_NAME))


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


class Generator:
    def __init__(self, orders: int, days: int, extra: float, vendors: int, customers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.orders, self.days, self.extra = orders, days, extra
        self.end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.start = self.end - timedelta(days=days)
        self.customer_ids = [_uuid(self.rng) for _ in range(customers)]
        self.vendor_ids = [_uuid(self.rng) for _ in range(vendors)]
        self.vendor_users = [_uuid(self.rng) for _ in range(vendors)]
        weights = [1.0 / (i + 1) ** 0.9 for i in range(vendors)]
        total = sum(weights)
        self.vendor_cum = list(_accumulate(w / total for w in weights))
        self.window = (0.0, 1.0)

    def users(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        rows = [(c, f"+2349{i:010d}", _PASSWORD, "CUSTOMER", "C", "Bench") for i, c in enumerate(self.customer_ids)]
        rows += [(u, f"+2348{i:010d}", _PASSWORD, "VENDOR", "V", "Bench") for i, u in enumerate(self.vendor_users)]
        vendors = [
            (v, u, f"Vendor {i}", 6.45 + self.rng.random() * 0.15, 3.3 + self.rng.random() * 0.2, 10.0, True)
            for i, (v, u) in enumerate(zip(self.vendor_ids, self.vendor_users, strict=True))
        ]
        return rows, vendors

    def _vendor(self) -> int:
        x = self.rng.random()
        lo, hi = 0, len(self.vendor_cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.vendor_cum[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _when(self) -> datetime:
        """A time in the current `window` (fractions of the period), busier in the evening."""
        lo, hi = self.window
        span = self.days * 86400.0
        while True:
            t = self.start + timedelta(seconds=span * (lo + (hi - lo) * self.rng.random()))
            if self.rng.random() * max(_HOUR_WEIGHTS) <= _HOUR_WEIGHTS[t.hour]:
                return t

    def chunk(self, accepted: int) -> dict[str, list[tuple[Any, ...]]]:
        """Rows for `accepted` accepted requests (each with its order) and the extra requests."""
        rng = self.rng
        out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in ("meal_requests", "offers", "orders", "ne", "oe")}
        n_extra = int(accepted * self.extra)
        for i in range(accepted + n_extra):
            rid, created, cust = _uuid(rng), self._when(), rng.choice(self.customer_ids)
            category = CATEGORIES[min(int(rng.expovariate(0.35)), len(CATEGORIES) - 1)]
            is_accepted = i < accepted
            status = "ACCEPTED" if is_accepted else ("EXPIRED" if rng.random() < 0.7 else "CANCELLED")
            budget_max = rng.randrange(200_000, 2_000_000, 1000)
            nev = [(rid, 1, "request:new", '{"k":1}', "[]", created)]
            offers = []
            t = created
            for _ in range(rng.randint(1, 4)):
                t = t + timedelta(seconds=max(5.0, rng.gauss(90, 60)))
                v = self._vendor()
                oid = _uuid(rng)
                price = rng.randrange(150_000, budget_max, 500)
                lost = "EXPIRED" if status == "EXPIRED" else "REJECTED"
                rounds = rng.choice((0, 0, 0, 1, 1, 2, 3))
                offers.append([oid, rid, self.vendor_ids[v], f"Vendor {v}", price, lost, rounds, t])
                nev.append((rid, len(nev) + 1, "offer:new", '{"k":1}', "[]", t))
            accepted_offer = order_id = None
            closed = t + timedelta(seconds=rng.randint(30, 600))
            if is_accepted:
                win = rng.choice(offers)
                win[5] = "ACCEPTED"
                accepted_offer, order_id = win[0], _uuid(rng)
                out["orders"].append(self._order(order_id, rid, win, cust, closed, out["oe"]))
            nev.append((rid, len(nev) + 1, "request:closed", '{"k":1}', "[]", closed))
            out["ne"] += nev
            for o in offers:
                out["offers"].append(
                    (o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], closed, rng.choice((None, 20, 30)))
                )
            out["meal_requests"].append(
                (rid, cust, category, 100_000, budget_max, 6.5, 3.4, "bench", status, created + timedelta(minutes=15),
                 10, len(offers), len(nev), accepted_offer, order_id, created, closed)
            )  # fmt: skip
        return out

    def _order(
        self, oid: uuid.UUID, rid: uuid.UUID, win: list[Any], cust: uuid.UUID, created: datetime, oe: list[Any]
    ) -> tuple[Any, ...]:
        rng = self.rng
        x = rng.random()
        if x < 0.80:
            path = ["CONFIRMED", "PREPARING", "READY", "PICKED_UP", "OUT_FOR_DELIVERY", "DELIVERED"]
        elif x < 0.88:
            path = ["CONFIRMED", "CANCELED"] if rng.random() < 0.5 else ["CANCELED"]
        elif x < 0.93:
            path = []  # still PENDING_PAYMENT
        else:
            path = ["CONFIRMED", "PREPARING", "READY", "PICKED_UP", "OUT_FOR_DELIVERY"][: rng.randint(1, 5)]
        t, confirmed = created, None
        for seq, status in enumerate(path, start=1):
            t = t + timedelta(minutes=max(0.5, rng.gauss(6 if status != "DELIVERED" else 18, 4)))
            confirmed = t if status == "CONFIRMED" else confirmed
            payload = orjson.dumps({"event": {"seq": seq, "kind": "status", "status": status, "at": t.isoformat()}})
            oe.append((oid, seq, "status", payload.decode(), t))
        final = path[-1] if path else "PENDING_PAYMENT"
        paid = "PAID" if confirmed else "PENDING"
        return (oid, rid, win[0], cust, win[2], win[4], final, paid, 6.5, 3.4, len(path), confirmed, created, t)


def _accumulate(values: Any) -> Any:
    total = 0.0
    for v in values:
        total += v
        yield total


_COLUMNS = {
    "meal_requests": (
        "id", "customer_id", "category", "budget_min_kobo", "budget_max_kobo", "delivery_lat", "delivery_lng",
        "address_line", "status", "expires_at", "max_vendor_offers", "offer_count", "seq", "accepted_offer_id",
        "order_id", "created_at", "updated_at",
    ),
    "offers": (
        "id", "request_id", "vendor_id", "vendor_name", "price_kobo", "status", "round", "created_at", "updated_at",
        "prep_minutes",
    ),
    "orders": (
        "id", "request_id", "offer_id", "customer_id", "vendor_id", "amount_kobo", "status", "payment_status",
        "delivery_lat", "delivery_lng", "seq", "confirmed_at", "created_at", "updated_at",
    ),
    "ne": ("request_id", "seq", "kind", "payload", "targets", "created_at"),
    "oe": ("order_id", "seq", "kind", "payload", "created_at"),
}  # fmt: skip
_TABLES = {"ne": "negotiation_events", "oe": "order_events"}
_TIME_COLUMN = {key: cols.index("created_at") for key, cols in _COLUMNS.items()}


async def generate(args: argparse.Namespace) -> None:
    base = admin_url()
    admin = await asyncpg.connect(base)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    await admin.close()
    conn = await asyncpg.connect(bench_url(base))
    await migrate(conn)
    await conn.execute("SET session_replication_role = replica")
    gen = Generator(args.orders, args.days, args.extra, args.vendors, args.customers, args.seed)
    started = time.perf_counter()
    users, vendors = gen.users()
    await conn.copy_records_to_table(
        "users", records=users, columns=("id", "phone", "password_hash", "role", "first_name", "last_name")
    )
    await conn.copy_records_to_table(
        "vendors",
        records=vendors,
        columns=("id", "user_id", "display_name", "lat", "lng", "km_service_area", "verified"),
    )
    counts = dict.fromkeys(_COLUMNS, 0)
    done = 0
    while done < args.orders:
        n = min(CHUNK, args.orders - done)
        # Chronological chunks, each sorted by time: rows land in the order a live system
        # writes them, so the BRIN indexes on the event logs are as tight as in production.
        gen.window = (done / args.orders, (done + n) / args.orders)
        rows = gen.chunk(n)
        for key, records in rows.items():
            records.sort(key=lambda r, i=_TIME_COLUMN[key]: r[i])
            await conn.copy_records_to_table(_TABLES.get(key, key), records=records, columns=_COLUMNS[key])
            counts[key] += len(records)
        done += n
        print(f"\r{done:,} orders", end="", file=sys.stderr, flush=True)
    loaded = time.perf_counter() - started
    print(file=sys.stderr)
    await conn.execute("SET session_replication_role = DEFAULT")
    await conn.execute("ANALYZE")
    pool = await asyncpg.create_pool(bench_url(base), min_size=1, max_size=2, command_timeout=None)
    assert pool is not None
    t = time.perf_counter()
    hours = await analytics.refresh(pool, full=True)
    rollups = time.perf_counter() - t
    await conn.execute("VACUUM ANALYZE")
    await pool.close()
    await conn.close()
    print(
        f"loaded {', '.join(f'{_TABLES.get(k, k)} {v:,}' for k, v in counts.items())} in {loaded:.0f} s; "
        f"rollups for {hours:,} hours built in {rollups:.0f} s ({gen.start:%Y-%m-%d} .. {gen.end:%Y-%m-%d})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--extra", type=float, default=0.3, help="expired/cancelled requests per accepted one")
    parser.add_argument("--vendors", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=11)
    asyncio.run(generate(parser.parse_args()))


if __name__ == "__main__":
    main()
