"""Queries for the catalogue: vendors, menus, menu items, riders, admin verification, and
the search documents built from them.

Every write that changes what search can see (a vendor, a menu item) also inserts a
`search_outbox` row with `enqueue_search` on the *same connection inside the caller's
transaction*, so the index is updated if and only if the change commits (DESIGN
"Persistence"). The outbox row says which entity changed; the worker that drains it
(`sync_search`) re-reads the entity's current state, so rows can be applied in any
order, duplicates collapse, and `op` is informative: the state decides whether the
document is upserted or deleted.

Style: pypika, every fixed statement rendered to SQL once at import. Partial updates and
item inserts name a variable set of columns, always from a whitelist (`VENDOR_COLUMNS`,
`ITEM_COLUMNS`): their SQL is built once per column set and cached. Functions return
asyncpg Records; the camelCase PROTOCOL objects are built at the edge (`pocho_rt.views`).
The Meilisearch documents (`vendor_doc`, `item_doc`) stay here, next to `sync_search`,
the one place that reads the rows they are made of.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from pypika import PostgreSQLQuery, Table
from pypika.terms import Star, ValueWrapper

from engine.ports import SearchIndex
from persistence.sql import NOW, any_of, limit_param, param, params, postgres

VENDOR_ENTITY = "vendor"
ITEM_ENTITY = "menu_item"

# Columns a client may set (create and partial update), in insert order.
VENDOR_COLUMNS = ("display_name", "lat", "lng", "km_service_area", "categories")
ITEM_COLUMNS = ("name", "price_kobo", "description", "cuisine_tag", "prep_minutes", "is_available")

vendors = Table("vendors")
menus = Table("menus")
menu_items = Table("menu_items")
riders = Table("riders")
search_outbox = Table("search_outbox")
_TABLES = {"vendors": vendors, "menu_items": menu_items}  # what `_update_sql` may name
_ALL = Star()


# ---------------------------------------------------------------- statements

_ENQUEUE = str(PostgreSQLQuery.into(search_outbox).columns("entity", "entity_id", "op").insert(*params(3)))
_REINDEX_ALL = str(
    PostgreSQLQuery.into(search_outbox)
    .columns("entity", "entity_id", "op")
    .from_(vendors)
    .select(ValueWrapper(VENDOR_ENTITY), vendors.id, ValueWrapper("upsert"))
)

_INSERT_VENDOR = str(
    postgres(PostgreSQLQuery.into(vendors).columns("user_id", *VENDOR_COLUMNS).insert(*params(1 + len(VENDOR_COLUMNS))))
    .on_conflict("user_id")
    .do_nothing()
    .returning(_ALL)
)
_vendor_by_id = PostgreSQLQuery.from_(vendors).select(_ALL).where(vendors.id == param(1))
_VENDOR = str(_vendor_by_id)
_VENDOR_FOR_UPDATE = str(_vendor_by_id.for_update())
_PENDING_VENDORS = str(
    limit_param(
        PostgreSQLQuery.from_(vendors)
        .select(_ALL)
        .where(vendors.verified.negate())
        .orderby(vendors.created_at, vendors.id),
        1,
    )
)
_VERIFY_VENDOR = str(
    postgres(
        PostgreSQLQuery.update(vendors)
        .set(vendors.verified, True)
        .set(vendors.verified_at, NOW)
        .set(vendors.verified_by, param(2))
        .set(vendors.updated_at, NOW)
        .where((vendors.id == param(1)) & vendors.verified.negate())
    ).returning(_ALL)
)
_VENDOR_BY_USER = str(
    PostgreSQLQuery.from_(vendors)
    .select(vendors.id, vendors.display_name, vendors.lat, vendors.lng, vendors.km_service_area, vendors.verified)
    .where(vendors.user_id == param(1))
)
# `verified` here means "may be matched": verified by an admin and the account not disabled.
_VENDOR_GEO = """SELECT v.lat, v.lng, v.km_service_area, v.verified AND NOT u.disabled AS verified
                   FROM vendors v JOIN users u ON u.id = v.user_id WHERE v.id = $1"""

_INSERT_MENU = str(
    postgres(PostgreSQLQuery.into(menus).columns("vendor_id", "title").insert(*params(2))).returning(_ALL)
)
_m, _v, _i = menus.as_("m"), vendors.as_("v"), menu_items.as_("i")
_MENU_OWNER = str(
    PostgreSQLQuery.from_(_m)
    .join(_v)
    .on(_v.id == _m.vendor_id)
    .select(_m.id, _m.vendor_id, _v.user_id.as_("owner_id"))
    .where(_m.id == param(1))
)
_MENUS_OF_VENDOR = str(
    PostgreSQLQuery.from_(menus).select(_ALL).where(menus.vendor_id == param(1)).orderby(menus.created_at, menus.id)
)
_ITEMS_OF_VENDOR = str(
    PostgreSQLQuery.from_(menu_items)
    .select(_ALL)
    .where(menu_items.vendor_id == param(1))
    .orderby(menu_items.created_at, menu_items.id)
)
_item_with_owner = (
    PostgreSQLQuery.from_(_i)
    .join(_v)
    .on(_v.id == _i.vendor_id)
    .select(_i.star, _v.user_id.as_("owner_id"))
    .where(_i.id == param(1))
)
_ITEM_WITH_OWNER = str(_item_with_owner)
_ITEM_WITH_OWNER_FOR_UPDATE = str(postgres(_item_with_owner).for_update(of=("i",)))

_INSERT_RIDER = str(
    postgres(PostgreSQLQuery.into(riders).columns("user_id", "vehicle_type").insert(*params(2)))
    .on_conflict("user_id")
    .do_nothing()
    .returning(_ALL)
)

# An item with its vendor's columns as v_* (what `item_doc` reads).
_ITEM_DOCS = str(
    PostgreSQLQuery.from_(_i)
    .join(_v)
    .on(_v.id == _i.vendor_id)
    .select(
        _i.star,
        _v.display_name.as_("v_display_name"),
        _v.verified.as_("v_verified"),
        _v.lat.as_("v_lat"),
        _v.lng.as_("v_lng"),
    )
    .where((_i.id == any_of(param(1, "uuid[]"))) | (_i.vendor_id == any_of(param(2, "uuid[]"))))
)
_VENDORS_BY_IDS = str(PostgreSQLQuery.from_(vendors).select(_ALL).where(vendors.id == any_of(param(1, "uuid[]"))))


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...]) -> str:
    """UPDATE `table` SET the columns ($2...) and updated_at WHERE id = $1 RETURNING *;
    built once per column set (a whitelist subset, so the cache is bounded)."""
    t = _TABLES[table]
    q = PostgreSQLQuery.update(t)
    for n, col in enumerate(columns, 2):
        q = q.set(t.field(col), param(n))
    return str(postgres(q.set(t.updated_at, NOW).where(t.id == param(1))).returning(_ALL))


@functools.cache
def _insert_item_sql(columns: tuple[str, ...]) -> str:
    """INSERT a menu item: menu_id $1, vendor_id $2, then `columns`; built once per column set."""
    return str(
        postgres(
            PostgreSQLQuery.into(menu_items).columns("menu_id", "vendor_id", *columns).insert(*params(2 + len(columns)))
        ).returning(_ALL)
    )


def _columns(changes: Mapping[str, Any], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The whitelisted columns named in `changes`, in whitelist order (one cache entry per set)."""
    unknown = set(changes).difference(allowed)
    if unknown:
        raise ValueError(f"unknown columns: {sorted(unknown)}")
    return tuple(c for c in allowed if c in changes)


# ---------------------------------------------------------------- outbox


async def enqueue_search(conn: asyncpg.Connection, entity: str, entity_id: uuid.UUID, op: str = "upsert") -> None:
    """Record that `entity` changed; call inside the transaction of the change."""
    await conn.execute(_ENQUEUE, entity, entity_id, op)


async def enqueue_full_reindex(conn: asyncpg.Connection) -> int:
    """Queue every vendor for a search re-sync (e.g. after pointing at a new Meilisearch);
    each vendor row re-syncs its items too. Returns how many rows were queued."""
    result = await conn.execute(_REINDEX_ALL)
    return int(result.split()[-1])


# ---------------------------------------------------------------- vendors


async def create_vendor(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    display_name: str,
    lat: float,
    lng: float,
    km_service_area: float,
    categories: Sequence[str],
) -> asyncpg.Record | None:
    """Insert an unverified vendor and its search outbox row; None when the user has one."""
    row = await conn.fetchrow(_INSERT_VENDOR, user_id, display_name, lat, lng, km_service_area, list(categories))
    if row is not None:
        await enqueue_search(conn, VENDOR_ENTITY, row["id"])
    return row


async def get_vendor(
    conn: asyncpg.Connection | asyncpg.Pool, vendor_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(_VENDOR_FOR_UPDATE if for_update else _VENDOR, vendor_id)


async def vendor_by_user(pool: asyncpg.Pool, user_id: str) -> asyncpg.Record | None:
    """(id, display_name, lat, lng, km_service_area, verified) of the user's vendor profile."""
    return await pool.fetchrow(_VENDOR_BY_USER, uuid.UUID(user_id))


async def vendor_geo(pool: asyncpg.Pool, vendor_id: str) -> asyncpg.Record | None:
    """(lat, lng, km_service_area, verified) of a vendor: what the geo index keeps (`verified` is
    false while the vendor's account is disabled)."""
    return await pool.fetchrow(_VENDOR_GEO, uuid.UUID(vendor_id))


async def update_vendor(conn: asyncpg.Connection, vendor_id: uuid.UUID, changes: Mapping[str, Any]) -> asyncpg.Record:
    """Apply a partial update (columns from `VENDOR_COLUMNS`) and enqueue a search upsert."""
    cols = _columns(changes, VENDOR_COLUMNS)
    row = await conn.fetchrow(_update_sql("vendors", cols), vendor_id, *(changes[c] for c in cols))
    assert row is not None
    await enqueue_search(conn, VENDOR_ENTITY, vendor_id)
    return row


async def pending_vendors(conn: asyncpg.Connection | asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Unverified vendors, oldest first (vendors_pending_idx)."""
    rows: list[asyncpg.Record] = await conn.fetch(_PENDING_VENDORS, limit)
    return rows


async def verify_vendor(
    conn: asyncpg.Connection, vendor_id: uuid.UUID, admin_id: str | None
) -> tuple[asyncpg.Record | None, bool]:
    """Mark a vendor verified; (row, changed). Idempotent: an already verified vendor is
    returned unchanged with changed=False. Enqueues a search upsert when it changed."""
    row = await conn.fetchrow(_VERIFY_VENDOR, vendor_id, admin_id)
    if row is not None:
        await enqueue_search(conn, VENDOR_ENTITY, vendor_id)
        return row, True
    return await get_vendor(conn, vendor_id), False


# ---------------------------------------------------------------- menus and items


async def create_menu(conn: asyncpg.Connection, vendor_id: uuid.UUID, title: str) -> asyncpg.Record:
    row = await conn.fetchrow(_INSERT_MENU, vendor_id, title)
    assert row is not None
    return row


async def menu_owner(conn: asyncpg.Connection | asyncpg.Pool, menu_id: uuid.UUID) -> asyncpg.Record | None:
    """(menu id, vendor_id, owner_id) of a menu; None when unknown."""
    return await conn.fetchrow(_MENU_OWNER, menu_id)


async def create_item(
    conn: asyncpg.Connection, *, menu_id: uuid.UUID, vendor_id: uuid.UUID, fields: Mapping[str, Any]
) -> asyncpg.Record:
    """Insert a menu item (columns from `ITEM_COLUMNS`) and enqueue its search update."""
    cols = _columns(fields, ITEM_COLUMNS)
    row = await conn.fetchrow(_insert_item_sql(cols), menu_id, vendor_id, *(fields[c] for c in cols))
    assert row is not None
    await enqueue_search(conn, ITEM_ENTITY, row["id"], "upsert" if row["is_available"] else "delete")
    return row


async def get_item_with_owner(
    conn: asyncpg.Connection, item_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    """The item's columns plus owner_id (its vendor's user), optionally locking the item."""
    return await conn.fetchrow(_ITEM_WITH_OWNER_FOR_UPDATE if for_update else _ITEM_WITH_OWNER, item_id)


async def update_item(conn: asyncpg.Connection, item_id: uuid.UUID, changes: Mapping[str, Any]) -> asyncpg.Record:
    cols = _columns(changes, ITEM_COLUMNS)
    row = await conn.fetchrow(_update_sql("menu_items", cols), item_id, *(changes[c] for c in cols))
    assert row is not None
    await enqueue_search(conn, ITEM_ENTITY, item_id, "upsert" if row["is_available"] else "delete")
    return row


async def menus_and_items(
    conn: asyncpg.Connection | asyncpg.Pool, vendor_id: uuid.UUID
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """One vendor's menus and its items, each oldest first (`pocho_rt.views.menus_view` nests them)."""
    menu_rows: list[asyncpg.Record] = await conn.fetch(_MENUS_OF_VENDOR, vendor_id)
    item_rows: list[asyncpg.Record] = await conn.fetch(_ITEMS_OF_VENDOR, vendor_id)
    return menu_rows, item_rows


# ---------------------------------------------------------------- riders


async def create_rider(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: str, vehicle_type: str
) -> asyncpg.Record | None:
    """Insert a rider profile; None when the user already has one."""
    return await conn.fetchrow(_INSERT_RIDER, user_id, vehicle_type)


# ---------------------------------------------------------------- search documents


def vendor_doc(row: Any) -> dict[str, Any]:
    """The search document of a vendor (Meilisearch `vendors` index; `_geo` enables geo sort)."""
    return {
        "id": str(row["id"]),
        "displayName": row["display_name"],
        "categories": list(row["categories"]),
        "lat": row["lat"],
        "lng": row["lng"],
        "kmServiceArea": row["km_service_area"],
        "verified": row["verified"],
        "_geo": {"lat": row["lat"], "lng": row["lng"]},
    }


def item_doc(row: Any) -> dict[str, Any]:
    """The search document of a menu item; `row` carries its vendor's columns as v_*."""
    return {
        "id": str(row["id"]),
        "menuId": str(row["menu_id"]),
        "vendorId": str(row["vendor_id"]),
        "vendorName": row["v_display_name"],
        "name": row["name"],
        "priceKobo": row["price_kobo"],
        "description": row["description"],
        "cuisineTag": row["cuisine_tag"],
        "prepMinutes": row["prep_minutes"],
        "isAvailable": row["is_available"],
        "vendorVerified": row["v_verified"],
        "_geo": {"lat": row["v_lat"], "lng": row["v_lng"]},
    }


async def sync_search(pool: asyncpg.Pool, index: SearchIndex, rows: Sequence[Any]) -> dict[int, str]:
    """Outbox handler: bring the index in line with the current state of the changed entities.

    A vendor row re-syncs the vendor *and all its items* (their vendorName, location and
    visibility follow the vendor). Searchable = verified vendor; available item of a
    verified vendor; everything else (including rows gone from the database) is deleted
    from the index. One upsert and one delete call per index per batch. Any index error
    raises, failing the whole batch (upserts/deletes are idempotent, so a retry is safe).
    """
    vendor_ids = {r["entity_id"] for r in rows if r["entity"] == VENDOR_ENTITY}
    item_ids = {r["entity_id"] for r in rows if r["entity"] == ITEM_ENTITY}
    async with pool.acquire() as conn:
        vendor_rows = await conn.fetch(_VENDORS_BY_IDS, list(vendor_ids))
        item_rows = await conn.fetch(_ITEM_DOCS, list(item_ids), list(vendor_ids))
    found_vendors = {v["id"] for v in vendor_rows}
    found_items = {i["id"] for i in item_rows}
    vendor_up = [vendor_doc(v) for v in vendor_rows if v["verified"]]
    vendor_del = [str(v["id"]) for v in vendor_rows if not v["verified"]]
    vendor_del += [str(v) for v in vendor_ids - found_vendors]
    item_up = [item_doc(i) for i in item_rows if i["is_available"] and i["v_verified"]]
    item_del = [str(i["id"]) for i in item_rows if not (i["is_available"] and i["v_verified"])]
    item_del += [str(i) for i in item_ids - found_items]
    if vendor_up:
        await index.upsert(VENDOR_ENTITY, vendor_up)
    if vendor_del:
        await index.delete(VENDOR_ENTITY, vendor_del)
    if item_up:
        await index.upsert(ITEM_ENTITY, item_up)
    if item_del:
        await index.delete(ITEM_ENTITY, item_del)
    return {}
