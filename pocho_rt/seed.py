"""Demo data for a fresh machine: verified vendors with menus in Lagos, customers, riders,
one ADMIN. Idempotent (keyed by phone) and serialised by an advisory lock, so several
starting nodes can all call it.

Every demo account's password is DEMO_PASSWORD (documented in the README); the ADMIN's is
POCHO_ADMIN_PASSWORD when set. Run directly: `python -m pocho_rt.seed` (uses DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg

from persistence.pii import PiiCodec
from persistence.users import create_user, user_by_phone
from pocho_rt.auth.passwords import hash_password

DEMO_PASSWORD = "pocho-demo-pass"
_LOCK_KEY = 0x70C40_0002

VENDORS: list[dict[str, Any]] = [
    {
        "phone": "+2348010000001",
        "first": "Bisi",
        "name": "Mama Bisi Kitchen",
        "lat": 6.5244,
        "lng": 3.3792,
        "km": 8.0,
        "categories": ["nigerian", "rice"],
        "items": [
            ("Jollof Rice with Chicken", 350000, "nigerian"),
            ("Fried Rice and Turkey", 420000, "nigerian"),
            ("Ofada Rice and Ayamase", 380000, "nigerian"),
        ],
    },
    {
        "phone": "+2348010000002",
        "first": "Emeka",
        "name": "Suya Spot Lekki",
        "lat": 6.4474,
        "lng": 3.4723,
        "km": 6.0,
        "categories": ["grill", "suya"],
        "items": [
            ("Beef Suya", 250000, "grill"),
            ("Chicken Suya", 280000, "grill"),
            ("Asun (spicy goat)", 320000, "grill"),
        ],
    },
    {
        "phone": "+2348010000003",
        "first": "Tunde",
        "name": "Amala Joint Yaba",
        "lat": 6.5158,
        "lng": 3.3707,
        "km": 5.0,
        "categories": ["nigerian", "swallow"],
        "items": [
            ("Amala and Ewedu", 200000, "nigerian"),
            ("Pounded Yam and Egusi", 300000, "nigerian"),
            ("Eba and Okra Soup", 220000, "nigerian"),
        ],
    },
]
CUSTOMERS = [("+2348020000001", "Ada", "Obi"), ("+2348020000002", "Kemi", "Adeyemi")]
RIDERS = [("+2348030000001", "Musa", "Bello", "motorcycle"), ("+2348030000002", "Chidi", "Eze", "bicycle")]
ADMIN = ("+2348000000000", "Ops", "Admin")


async def _user(
    conn: asyncpg.Connection, pii: PiiCodec, phone: str, role: str, first: str, last: str, pw_hash: str
) -> Any:
    row = await create_user(
        conn, pii, phone=phone, password_hash=pw_hash, role=role, first_name=first, last_name=last, email=None
    )
    if row is None:
        row = await user_by_phone(conn, pii, phone)
    assert row is not None
    return row["id"]


async def seed(pool: asyncpg.Pool, pii: PiiCodec) -> None:
    """Insert whatever of the demo data is missing."""
    demo_hash = await hash_password(DEMO_PASSWORD)
    admin_pw = os.environ.get("POCHO_ADMIN_PASSWORD")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        for phone, first, last in CUSTOMERS:
            await _user(conn, pii, phone, "CUSTOMER", first, last, demo_hash)
        for phone, first, last, vehicle in RIDERS:
            uid = await _user(conn, pii, phone, "RIDER", first, last, demo_hash)
            await conn.execute(
                "INSERT INTO riders (user_id, vehicle_type) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
                uid,
                vehicle,
            )
        admin_id = await _user(
            conn, pii, ADMIN[0], "ADMIN", ADMIN[1], ADMIN[2], await hash_password(admin_pw) if admin_pw else demo_hash
        )
        for v in VENDORS:
            uid = await _user(conn, pii, v["phone"], "VENDOR", v["first"], "Vendor", demo_hash)
            vendor_id = await conn.fetchval(
                """INSERT INTO vendors (user_id, display_name, lat, lng, km_service_area, categories,
                                        verified, verified_at, verified_by)
                   VALUES ($1, $2, $3, $4, $5, $6, true, now(), $7)
                   ON CONFLICT (user_id) DO NOTHING RETURNING id""",
                uid,
                v["name"],
                v["lat"],
                v["lng"],
                v["km"],
                v["categories"],
                admin_id,
            )
            if vendor_id is None:
                continue  # already seeded, menus included
            menu_id = await conn.fetchval(
                "INSERT INTO menus (vendor_id, title) VALUES ($1, 'Main menu') RETURNING id", vendor_id
            )
            for name, price, tag in v["items"]:
                await conn.execute(
                    """INSERT INTO menu_items (menu_id, vendor_id, name, price_kobo, cuisine_tag, prep_minutes)
                       VALUES ($1, $2, $3, $4, $5, 20)""",
                    menu_id,
                    vendor_id,
                    name,
                    price,
                    tag,
                )
            await conn.execute(
                """INSERT INTO search_outbox (entity, entity_id, op) VALUES ('vendor', $1, 'upsert')""", vendor_id
            )
            await conn.execute(
                """INSERT INTO search_outbox (entity, entity_id, op)
                   SELECT 'menu_item', id, 'upsert' FROM menu_items WHERE vendor_id = $1""",
                vendor_id,
            )


async def _main() -> None:
    from persistence.db import create_pool
    from pocho_rt.config import load_settings

    s = load_settings()
    pool = await create_pool(os.environ["DATABASE_URL"])
    try:
        await seed(pool, PiiCodec.build(s.pii_key, s.pii_old_keys, s.pii_index_key, s.pii_old_index_key))
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(_main())
