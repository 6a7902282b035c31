"""Queries for the catalogue: vendors, menus, menu items, riders, admin verification, and
the search documents built from them.

Every write that changes what search can see (a vendor, a menu item) also inserts a
`search_outbox` row with `enqueue_search` on the *same connection inside the caller's
transaction*, so the index is updated if and only if the change commits (DESIGN
"Persistence"). The outbox row says which entity changed; the worker that drains it
(`sync_search`) re-reads the entity's current state, so rows can be applied in any
order, duplicates collapse, and `op` is informative: the state decides whether the
document is upserted or deleted.

Statements are plain parametrised SQL: a handful of fixed statements plus updates whose
column list comes from a whitelist (`_VENDOR_COLUMNS`, `_ITEM_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from engine.clock import iso
from engine.ports import SearchIndex

VENDOR_ENTITY = "vendor"
ITEM_ENTITY = "menu_item"

_VENDOR_COLUMNS = {"display_name", "lat", "lng", "km_service_area", "categories"}
_ITEM_COLUMNS = {"name", "price_kobo", "description", "cuisine_tag", "prep_minutes", "is_available"}


# ---------------------------------------------------------------- views (PROTOCOL objects)

def _view(row: Any, *columns: str) -> dict[str, Any]:
    """Columns as PROTOCOL's camelCase fields: ids as strings, times in the wire format."""
    out: dict[str, Any] = {}
    for col in columns:
        value = row[col]
        if isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = iso(value)
        head, *rest = col.split("_")
        out[head + "".join(w.title() for w in rest)] = value
    return out


def vendor_view(row: Any) -> dict[str, Any]:
    view = _view(row, "id", "user_id", "display_name", "lat", "lng", "km_service_area", "categories", "verified",
                 "created_at", "updated_at")
    view["categories"] = list(view["categories"])
    return view


def menu_view(row: Any) -> dict[str, Any]:
    return _view(row, "id", "vendor_id", "title", "created_at", "updated_at")


def item_view(row: Any) -> dict[str, Any]:
    return _view(row, "id", "menu_id", "vendor_id", "name", "price_kobo", "description", "cuisine_tag",
                 "prep_minutes", "is_available", "created_at", "updated_at")


def rider_view(row: Any) -> dict[str, Any]:
    return _view(row, "id", "user_id", "vehicle_type", "created_at")


# ---------------------------------------------------------------- outbox and audit

async def enqueue_search(conn: asyncpg.Connection, entity: str, entity_id: UUID, op: str = "upsert") -> None:
    """Record that `entity` changed; call inside the transaction of the change."""
    await conn.execute("INSERT INTO search_outbox (entity, entity_id, op) VALUES ($1, $2, $3)",
                       entity, entity_id, op)


async def audit(conn: asyncpg.Connection, *, actor_id: str | None, actor_kind: str, action: str,
                target_kind: str, target_id: str, details: dict[str, Any], request_id: str | None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor_id, actor_kind, action, target_kind, target_id, details, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        actor_id, actor_kind, action, target_kind, target_id, details, request_id)


def _set_clause(changes: Mapping[str, Any], allowed: set[str], first_param: int) -> tuple[str, list[Any]]:
    cols = [c for c in changes if c in allowed]
    if len(cols) != len(changes):
        raise ValueError(f"unknown columns: {sorted(set(changes) - allowed)}")
    sets = [f"{c} = ${first_param + i}" for i, c in enumerate(cols)]
    sets.append("updated_at = now()")
    return ", ".join(sets), [changes[c] for c in cols]


# ---------------------------------------------------------------- vendors

async def create_vendor(conn: asyncpg.Connection, *, user_id: str, display_name: str, lat: float, lng: float,
                        km_service_area: float, categories: Sequence[str]) -> asyncpg.Record | None:
    """Insert an unverified vendor and its search outbox row; None when the user has one."""
    row = await conn.fetchrow(
        """INSERT INTO vendors (user_id, display_name, lat, lng, km_service_area, categories)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (user_id) DO NOTHING RETURNING *""",
        user_id, display_name, lat, lng, km_service_area, list(categories))
    if row is not None:
        await enqueue_search(conn, VENDOR_ENTITY, row["id"])
    return row


async def get_vendor(conn: asyncpg.Connection | asyncpg.Pool, vendor_id: UUID, *,
                     for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT * FROM vendors WHERE id = $1{lock}", vendor_id)


async def update_vendor(conn: asyncpg.Connection, vendor_id: UUID, changes: Mapping[str, Any]) -> asyncpg.Record:
    """Apply a partial update (columns from `_VENDOR_COLUMNS`) and enqueue a search upsert."""
    sets, values = _set_clause(changes, _VENDOR_COLUMNS, 2)
    row = await conn.fetchrow(f"UPDATE vendors SET {sets} WHERE id = $1 RETURNING *", vendor_id, *values)
    assert row is not None
    await enqueue_search(conn, VENDOR_ENTITY, vendor_id)
    return row


async def pending_vendors(conn: asyncpg.Connection | asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Unverified vendors, oldest first (vendors_pending_idx)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM vendors WHERE NOT verified ORDER BY created_at, id LIMIT $1", limit)
    return rows


async def verify_vendor(conn: asyncpg.Connection, vendor_id: UUID,
                        admin_id: str | None) -> tuple[asyncpg.Record | None, bool]:
    """Mark a vendor verified; (row, changed). Idempotent: an already verified vendor is
    returned unchanged with changed=False. Enqueues a search upsert when it changed."""
    row = await conn.fetchrow(
        """UPDATE vendors SET verified = true, verified_at = now(), verified_by = $2, updated_at = now()
           WHERE id = $1 AND NOT verified RETURNING *""", vendor_id, admin_id)
    if row is not None:
        await enqueue_search(conn, VENDOR_ENTITY, vendor_id)
        return row, True
    return await get_vendor(conn, vendor_id), False


# ---------------------------------------------------------------- menus and items

async def create_menu(conn: asyncpg.Connection, vendor_id: UUID, title: str) -> asyncpg.Record:
    row = await conn.fetchrow("INSERT INTO menus (vendor_id, title) VALUES ($1, $2) RETURNING *", vendor_id, title)
    assert row is not None
    return row


async def menu_owner(conn: asyncpg.Connection | asyncpg.Pool, menu_id: UUID) -> asyncpg.Record | None:
    """(menu id, vendor_id, owner_id) of a menu; None when unknown."""
    return await conn.fetchrow(
        """SELECT m.id, m.vendor_id, v.user_id AS owner_id
           FROM menus m JOIN vendors v ON v.id = m.vendor_id WHERE m.id = $1""", menu_id)


async def create_item(conn: asyncpg.Connection, *, menu_id: UUID, vendor_id: UUID,
                      fields: Mapping[str, Any]) -> asyncpg.Record:
    """Insert a menu item (columns from `_ITEM_COLUMNS`) and enqueue its search update."""
    cols = [c for c in fields if c in _ITEM_COLUMNS]
    params = ", ".join(f"${i + 3}" for i in range(len(cols)))
    row = await conn.fetchrow(
        f"""INSERT INTO menu_items (menu_id, vendor_id{''.join(', ' + c for c in cols)})
            VALUES ($1, $2{', ' + params if cols else ''}) RETURNING *""",
        menu_id, vendor_id, *(fields[c] for c in cols))
    assert row is not None
    await enqueue_search(conn, ITEM_ENTITY, row["id"], "upsert" if row["is_available"] else "delete")
    return row


async def get_item_with_owner(conn: asyncpg.Connection, item_id: UUID, *,
                              for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF i" if for_update else ""
    return await conn.fetchrow(
        f"""SELECT i.*, v.user_id AS owner_id FROM menu_items i JOIN vendors v ON v.id = i.vendor_id
            WHERE i.id = $1{lock}""", item_id)


async def update_item(conn: asyncpg.Connection, item_id: UUID, changes: Mapping[str, Any]) -> asyncpg.Record:
    sets, values = _set_clause(changes, _ITEM_COLUMNS, 2)
    row = await conn.fetchrow(f"UPDATE menu_items SET {sets} WHERE id = $1 RETURNING *", item_id, *values)
    assert row is not None
    await enqueue_search(conn, ITEM_ENTITY, item_id, "upsert" if row["is_available"] else "delete")
    return row


async def menus_with_items(conn: asyncpg.Connection | asyncpg.Pool, vendor_id: UUID) -> list[dict[str, Any]]:
    """[{id, title, items: [item...]}] of one vendor, menus and items oldest first."""
    menus = await conn.fetch("SELECT * FROM menus WHERE vendor_id = $1 ORDER BY created_at, id", vendor_id)
    items = await conn.fetch("SELECT * FROM menu_items WHERE vendor_id = $1 ORDER BY created_at, id", vendor_id)
    by_menu: dict[UUID, list[dict[str, Any]]] = {m["id"]: [] for m in menus}
    for it in items:
        by_menu.setdefault(it["menu_id"], []).append(item_view(it))
    return [{**menu_view(m), "items": by_menu[m["id"]]} for m in menus]


# ---------------------------------------------------------------- riders

async def create_rider(conn: asyncpg.Connection | asyncpg.Pool, user_id: str,
                       vehicle_type: str) -> asyncpg.Record | None:
    """Insert a rider profile; None when the user already has one."""
    return await conn.fetchrow(
        """INSERT INTO riders (user_id, vehicle_type) VALUES ($1, $2)
           ON CONFLICT (user_id) DO NOTHING RETURNING *""", user_id, vehicle_type)


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


_ITEM_DOC_SELECT = """
    SELECT i.*, v.display_name AS v_display_name, v.verified AS v_verified, v.lat AS v_lat, v.lng AS v_lng
    FROM menu_items i JOIN vendors v ON v.id = i.vendor_id"""


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
        vendors = await conn.fetch("SELECT * FROM vendors WHERE id = ANY($1::uuid[])", list(vendor_ids))
        items = await conn.fetch(
            _ITEM_DOC_SELECT + " WHERE i.id = ANY($1::uuid[]) OR i.vendor_id = ANY($2::uuid[])",
            list(item_ids), list(vendor_ids))
    found_vendors = {v["id"] for v in vendors}
    found_items = {i["id"] for i in items}
    vendor_up = [vendor_doc(v) for v in vendors if v["verified"]]
    vendor_del = [str(v["id"]) for v in vendors if not v["verified"]]
    vendor_del += [str(v) for v in vendor_ids - found_vendors]
    item_up = [item_doc(i) for i in items if i["is_available"] and i["v_verified"]]
    item_del = [str(i["id"]) for i in items if not (i["is_available"] and i["v_verified"])]
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


async def enqueue_full_reindex(conn: asyncpg.Connection) -> int:
    """Queue every vendor for a search re-sync (e.g. after pointing at a new Meilisearch);
    each vendor row re-syncs its items too. Returns how many rows were queued."""
    result = await conn.execute(
        "INSERT INTO search_outbox (entity, entity_id, op) SELECT 'vendor', id, 'upsert' FROM vendors")
    return int(result.split()[-1])
