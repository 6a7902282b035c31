"""Vendors' standing auto-bid rules (table vendor_autobid_rules, one row per vendor and
category; categories stored trimmed and lower-cased, matched the same way).

Style: pypika, statements rendered to SQL once at import (as persistence.negotiation).
Functions return asyncpg Records.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
from pypika import Order, PostgreSQLQuery, Table

from engine.autobid import Rule
from persistence.sql import any_of, param, params

rules = Table("vendor_autobid_rules")
vendors = Table("vendors")
_COLUMNS = ("vendor_id", "category", "min_price_kobo", "radius_km", "prep_minutes", "details")

_INSERT = str(PostgreSQLQuery.into(rules).columns(*_COLUMNS).insert(*params(len(_COLUMNS))))
_DELETE = str(PostgreSQLQuery.from_(rules).delete().where(rules.vendor_id == param(1)))
_OF_VENDOR = str(
    PostgreSQLQuery.from_(rules)
    .select(*_COLUMNS, rules.created_at)
    .where(rules.vendor_id == param(1))
    .orderby(rules.category, order=Order.asc)
)
# The rules of `category` among the vendors a new request reached, with what a bid needs.
_MATCHING = str(
    PostgreSQLQuery.from_(rules)
    .join(vendors)
    .on(vendors.id == rules.vendor_id)
    .select(
        *(rules.field(c) for c in _COLUMNS),
        vendors.user_id,
        vendors.display_name,
        vendors.lat,
        vendors.lng,
        vendors.km_service_area,
        vendors.verified,
    )
    .where((rules.vendor_id == any_of(param(1, "uuid[]"))) & (rules.category == param(2)) & vendors.verified)
)


def normal_category(category: str) -> str:
    return category.strip().lower()


async def replace_rules(pool: asyncpg.Pool, vendor_id: uuid.UUID, new: Sequence[Rule]) -> list[asyncpg.Record]:
    """The vendor's rules become `new` (in one transaction); returns them as stored."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_DELETE, vendor_id)
        await conn.executemany(
            _INSERT,
            [
                (vendor_id, normal_category(r.category), r.min_price_kobo, r.radius_km, r.prep_minutes, r.details)
                for r in new
            ],
        )
        stored: list[asyncpg.Record] = await conn.fetch(_OF_VENDOR, vendor_id)
    return stored


async def rules_of(pool: asyncpg.Pool, vendor_id: uuid.UUID) -> list[asyncpg.Record]:
    stored: list[asyncpg.Record] = await pool.fetch(_OF_VENDOR, vendor_id)
    return stored


async def delete_rules(pool: asyncpg.Pool, vendor_id: uuid.UUID) -> None:
    await pool.execute(_DELETE, vendor_id)


async def matching(pool: asyncpg.Pool, vendor_ids: Sequence[str], category: str) -> list[asyncpg.Record]:
    """Rules for `category` of the verified vendors among `vendor_ids`, with each vendor's
    user id, name, position and service radius."""
    found: list[asyncpg.Record] = await pool.fetch(_MATCHING, list(vendor_ids), normal_category(category))
    return found


def rule_from_row(row: asyncpg.Record) -> Rule:
    return Rule(
        vendor_id=str(row["vendor_id"]),
        category=row["category"],
        min_price_kobo=row["min_price_kobo"],
        radius_km=row["radius_km"],
        prep_minutes=row["prep_minutes"],
        details=row["details"],
    )
