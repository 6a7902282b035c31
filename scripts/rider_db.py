"""The scratch database scripts/bench_riders.py loads: riders, customers and the orders they
share, created fresh on each run so every run starts from the same rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from persistence.migrate import migrate

LAT0, LNG0 = 6.45, 3.40  # Lagos
KM_PER_DEG = 111.2


@dataclass(frozen=True, slots=True)
class Pair:
    customer_id: str
    rider_user_id: str
    rider_id: str
    order_id: str
    lat: float
    lng: float


async def prepare_db(admin_url: str, riders: int, per_customer: int) -> tuple[str, list[Pair]]:
    """A fresh `pocho_bench_riders` database: R riders, R / per_customer customers, one vendor,
    and R orders OUT_FOR_DELIVERY, order i carried by rider i to customer i // per_customer
    (~5 km away)."""
    admin = await asyncpg.connect(admin_url)
    await admin.execute("DROP DATABASE IF EXISTS pocho_bench_riders WITH (FORCE)")
    await admin.execute("CREATE DATABASE pocho_bench_riders")
    await admin.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path="/pocho_bench_riders"))
    conn = await asyncpg.connect(url)
    await migrate(conn)
    now = datetime.now(UTC)
    vendor_user, vendor_id = uuid.uuid4(), uuid.uuid4()
    users: list[tuple[Any, ...]] = [(vendor_user, "+234690000000", "x", "VENDOR", "B", "B")]
    rider_rows, requests, offers, orders, pairs = [], [], [], [], []
    cust = uuid.uuid4()
    for i in range(riders):
        if i % per_customer == 0:
            cust = uuid.uuid4()
            users.append((cust, f"+23470{i:08d}", "x", "CUSTOMER", "B", "B"))
        rider_user, rider_id = uuid.uuid4(), uuid.uuid4()
        req, offer, order = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        lat, lng = LAT0 + (i // 100) * 0.002, LNG0 + (i % 100) * 0.002
        drop_lat = lat + 5.0 / KM_PER_DEG
        users.append((rider_user, f"+23472{i:08d}", "x", "RIDER", "B", "B"))
        rider_rows.append((rider_id, rider_user, "motorcycle"))
        requests.append(
            (
                req,
                cust,
                "bench",
                100_000,
                400_000,
                drop_lat,
                lng,
                "1 Bench St",
                "ACCEPTED",
                now + timedelta(hours=1),
                10,
                now,
            )
        )
        offers.append((offer, req, vendor_id, "Bench Kitchen", 300_000, "ACCEPTED", now, now))
        orders.append(
            (order, req, offer, cust, vendor_id, rider_id, 300_000, "OUT_FOR_DELIVERY", drop_lat, lng, now, now)
        )
        pairs.append(Pair(str(cust), str(rider_user), str(rider_id), str(order), lat, lng))
    await conn.copy_records_to_table(
        "users", records=users, columns=("id", "phone", "password_hash", "role", "first_name", "last_name")
    )
    await conn.execute(
        "INSERT INTO vendors (id, user_id, display_name, lat, lng, km_service_area, verified)"
        " VALUES ($1, $2, 'Bench Kitchen', $3, $4, 50, true)",
        vendor_id,
        vendor_user,
        LAT0,
        LNG0,
    )
    await conn.copy_records_to_table("riders", records=rider_rows, columns=("id", "user_id", "vehicle_type"))
    await conn.copy_records_to_table(
        "meal_requests",
        records=requests,
        columns=(
            "id",
            "customer_id",
            "category",
            "budget_min_kobo",
            "budget_max_kobo",
            "delivery_lat",
            "delivery_lng",
            "address_line",
            "status",
            "expires_at",
            "max_vendor_offers",
            "created_at",
        ),
    )
    await conn.copy_records_to_table(
        "offers",
        records=offers,
        columns=("id", "request_id", "vendor_id", "vendor_name", "price_kobo", "status", "created_at", "updated_at"),
    )
    await conn.copy_records_to_table(
        "orders",
        records=orders,
        columns=(
            "id",
            "request_id",
            "offer_id",
            "customer_id",
            "vendor_id",
            "rider_id",
            "amount_kobo",
            "status",
            "delivery_lat",
            "delivery_lng",
            "created_at",
            "updated_at",
        ),
    )
    await conn.close()
    return url, pairs
