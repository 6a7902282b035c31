"""HTTP routes: profiles and catalogue (PROTOCOL "Profiles and catalogue").

    POST  /api/v1/vendors                  VENDOR; 201 vendor, 409 if the user has one
    GET   /api/v1/vendors/{id}             any authenticated user
    PATCH /api/v1/vendors/{id}             owner; partial update
    POST  /api/v1/vendors/{id}/menus       owner; 201 menu
    GET   /api/v1/vendors/{id}/menus       any authenticated user; {menus: [{id, title, items}]}
    POST  /api/v1/menus/{id}/items         owner of the menu's vendor; 201 item
    PATCH /api/v1/menu-items/{id}          owner; partial update (null clears optional fields)
    POST  /api/v1/riders                   RIDER; 201 rider, 409 if the user has one
    GET   /api/v1/search?q=&lat=&lng=&limit=   any authenticated user; {vendors, menuItems}, each
                                           list up to `limit`; 503 when the index is unreachable

Errors: 400 `invalid` with field details, 401 without a valid token, 403 for another
role or a non-owner, 404 for an unknown id (or one that is not a uuid), 409 `conflict`.

Search goes through `svc.search` (an `engine.ports.SearchIndex`: PostgreSQL by default,
Meilisearch when configured; `pocho_rt.app` chooses it and runs the `search_outbox`
worker or prune loop). Every vendor and menu item write enqueues its outbox row in its
own transaction (`persistence.catalogue`) and, after commit, nudges the outbox worker
(`svc.search_outbox`, None without Meilisearch) so the index catches up at once.

After commit, when a vendor becomes verified (admin verify) or a verified vendor's lat,
lng or kmServiceArea changes (PATCH), `svc.negotiation.vendor_changed` is awaited: it
keeps the Redis geo index of vendors used to match meal requests. A failure there is
logged and does not fail the request (the change is committed); the geo index can be
rebuilt from the vendors table.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from persistence import catalogue as cat
from pocho_rt import views
from pocho_rt.auth.principal import require_user
from pocho_rt.context import Services, services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import body, json_response
from pocho_rt.http.pagination import limit_param
from pocho_rt.validation import Schema

log = logging.getLogger("pocho.catalogue")
routes = web.RouteTableDef()

DisplayName = Annotated[str, Meta(min_length=1, max_length=80)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
Lng = Annotated[float, Meta(ge=-180, le=180)]
Km = Annotated[float, Meta(gt=0, le=50)]
Categories = Annotated[list[Annotated[str, Meta(min_length=1, max_length=32)]], Meta(max_length=10)]
ItemName = Annotated[str, Meta(min_length=1, max_length=120)]
Price = Annotated[int, Meta(ge=1, le=50_000_000)]
Description = Annotated[str, Meta(max_length=1000)]
CuisineTag = Annotated[str, Meta(max_length=32)]
PrepMinutes = Annotated[int, Meta(ge=1, le=600)]


class VendorCreate(Schema, frozen=True):
    display_name: DisplayName
    lat: Lat
    lng: Lng
    km_service_area: Km
    categories: Categories = []


class VendorPatch(Schema, frozen=True):
    display_name: DisplayName | UnsetType = UNSET
    lat: Lat | UnsetType = UNSET
    lng: Lng | UnsetType = UNSET
    km_service_area: Km | UnsetType = UNSET
    categories: Categories | UnsetType = UNSET


class MenuCreate(Schema, frozen=True):
    title: Annotated[str, Meta(min_length=1, max_length=80)]


class ItemCreate(Schema, frozen=True):
    name: ItemName
    price_kobo: Price
    description: Description | None = None
    cuisine_tag: CuisineTag | None = None
    prep_minutes: PrepMinutes | None = None
    is_available: bool = True


class ItemPatch(Schema, frozen=True):
    name: ItemName | UnsetType = UNSET
    price_kobo: Price | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    cuisine_tag: CuisineTag | UnsetType | None = UNSET
    prep_minutes: PrepMinutes | UnsetType | None = UNSET
    is_available: bool | UnsetType = UNSET


class RiderCreate(Schema, frozen=True):
    vehicle_type: Literal["bicycle", "motorcycle", "car", "on_foot"]


# ---------------------------------------------------------------- helpers

_CAMEL = {
    "display_name": "displayName",
    "km_service_area": "kmServiceArea",
    "price_kobo": "priceKobo",
    "cuisine_tag": "cuisineTag",
    "prep_minutes": "prepMinutes",
    "is_available": "isAvailable",
}


def invalid(field: str, reason: str) -> ApiError:
    return ApiError("invalid", f"invalid {field}: {reason}", {field: reason})


def path_uuid(request: web.Request, what: str, key: str = "id") -> UUID:
    """The uuid in the path; anything else is an unknown id (404), never a 500."""
    try:
        return UUID(request.match_info[key])
    except ValueError:
        raise ApiError("not_found", f"{what} not found") from None


def changes_of(obj: msgspec.Struct) -> dict[str, Any]:
    """Fields given in a partial update (snake_case column names), blank strings refused."""
    out: dict[str, Any] = {}
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if value is UNSET:
            continue
        out[name] = _clean(name, value)
    if not out:
        raise invalid("body", "no fields to update")
    return out


def _clean(name: str, value: Any) -> Any:
    if name in ("display_name", "name", "title"):
        value = value.strip()
        if not value:
            raise invalid(_CAMEL.get(name, name), "must not be blank")
    elif name == "categories":
        value = [c.strip() for c in value]
        if any(not c for c in value):
            raise invalid("categories", "items must not be blank")
    elif name in ("description", "cuisine_tag") and value is not None:
        value = value.strip() or None
    return value


def fields_of(obj: msgspec.Struct) -> dict[str, Any]:
    return {name: _clean(name, getattr(obj, name)) for name in obj.__struct_fields__}


def nudge_search(svc: Services) -> None:
    """Tell this node's outbox worker (if any) that rows were just committed."""
    if svc.search_outbox is not None:
        svc.search_outbox.wakeup()


async def vendor_changed(svc: Services, vendor_id: UUID) -> None:
    """Bring the geo index in step with a committed vendor change (see module docstring)."""
    try:
        await svc.negotiation.vendor_changed(str(vendor_id))
    except Exception:
        log.exception("vendor_changed failed", extra={"vendorId": str(vendor_id)})


def _unknown_user() -> ApiError:
    return ApiError("unauthorized", "the account of this token no longer exists")


# ---------------------------------------------------------------- vendors


@routes.post("/api/v1/vendors")
async def create_vendor(request: web.Request) -> web.Response:
    principal = await require_user(request, "VENDOR")
    data = fields_of(await body(request, VendorCreate))
    svc = services(request)
    try:
        async with svc.pool.acquire() as conn, conn.transaction():
            row = await cat.create_vendor(conn, user_id=principal.user_id, **data)
    except asyncpg.ForeignKeyViolationError:
        raise _unknown_user() from None
    if row is None:
        raise ApiError("conflict", "this account already has a vendor profile")
    nudge_search(svc)
    return json_response(views.vendor_view(row), 201)


@routes.get("/api/v1/vendors/{id}")
async def get_vendor(request: web.Request) -> web.Response:
    await require_user(request)
    vendor_id = path_uuid(request, "vendor")
    row = await cat.get_vendor(services(request).pool, vendor_id)
    if row is None:
        raise ApiError("not_found", "vendor not found")
    return json_response(views.vendor_view(row))


@routes.patch("/api/v1/vendors/{id}")
async def patch_vendor(request: web.Request) -> web.Response:
    principal = await require_user(request)
    vendor_id = path_uuid(request, "vendor")
    changes = changes_of(await body(request, VendorPatch))
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        old = _owned(await cat.get_vendor(conn, vendor_id, for_update=True), "user_id", principal.user_id, "vendor")
        row = await cat.update_vendor(conn, vendor_id, changes)
    nudge_search(svc)
    moved = any(old[c] != row[c] for c in ("lat", "lng", "km_service_area"))
    if row["verified"] and moved:
        await vendor_changed(svc, vendor_id)
    return json_response(views.vendor_view(row))


# ---------------------------------------------------------------- menus and items


def _owned(row: asyncpg.Record | None, owner_column: str, user_id: str, what: str) -> asyncpg.Record:
    """The row if the caller owns it: 404 when missing, 403 for someone else's."""
    if row is None:
        raise ApiError("not_found", f"{what} not found")
    if str(row[owner_column]) != user_id:
        raise ApiError("forbidden", f"only the vendor's owner may change this {what}")
    return row


async def _owned_vendor(conn: asyncpg.Connection | asyncpg.Pool, vendor_id: UUID, user_id: str) -> asyncpg.Record:
    return _owned(await cat.get_vendor(conn, vendor_id), "user_id", user_id, "vendor")


@routes.post("/api/v1/vendors/{id}/menus")
async def create_menu(request: web.Request) -> web.Response:
    principal = await require_user(request)
    vendor_id = path_uuid(request, "vendor")
    data = fields_of(await body(request, MenuCreate))
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        await _owned_vendor(conn, vendor_id, principal.user_id)
        row = await cat.create_menu(conn, vendor_id, data["title"])
    return json_response(views.menu_view(row), 201)


@routes.get("/api/v1/vendors/{id}/menus")
async def list_menus(request: web.Request) -> web.Response:
    await require_user(request)
    vendor_id = path_uuid(request, "vendor")
    svc = services(request)
    async with svc.pool.acquire() as conn:
        if await cat.get_vendor(conn, vendor_id) is None:
            raise ApiError("not_found", "vendor not found")
        menu_rows, item_rows = await cat.menus_and_items(conn, vendor_id)
    return json_response({"menus": views.menus_view(menu_rows, item_rows)})


@routes.post("/api/v1/menus/{id}/items")
async def create_item(request: web.Request) -> web.Response:
    principal = await require_user(request)
    menu_id = path_uuid(request, "menu")
    data = fields_of(await body(request, ItemCreate))
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        menu = _owned(await cat.menu_owner(conn, menu_id), "owner_id", principal.user_id, "menu")
        row = await cat.create_item(conn, menu_id=menu_id, vendor_id=menu["vendor_id"], fields=data)
    nudge_search(svc)
    return json_response(views.item_view(row), 201)


@routes.patch("/api/v1/menu-items/{id}")
async def patch_item(request: web.Request) -> web.Response:
    principal = await require_user(request)
    item_id = path_uuid(request, "menu item")
    changes = changes_of(await body(request, ItemPatch))
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        _owned(
            await cat.get_item_with_owner(conn, item_id, for_update=True), "owner_id", principal.user_id, "menu item"
        )
        row = await cat.update_item(conn, item_id, changes)
    nudge_search(svc)
    return json_response(views.item_view(row))


# ---------------------------------------------------------------- riders


@routes.post("/api/v1/riders")
async def create_rider(request: web.Request) -> web.Response:
    principal = await require_user(request, "RIDER")
    data = await body(request, RiderCreate)
    try:
        row = await cat.create_rider(services(request).pool, principal.user_id, data.vehicle_type)
    except asyncpg.ForeignKeyViolationError:
        raise _unknown_user() from None
    if row is None:
        raise ApiError("conflict", "this account already has a rider profile")
    return json_response(views.rider_view(row), 201)


# ---------------------------------------------------------------- search


def _number(raw: str, name: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise invalid(name, "must be a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise invalid(name, f"must be between {lo:g} and {hi:g}")
    return value


def search_params(request: web.Request) -> tuple[str, float | None, float | None, int]:
    """(q, lat, lng, limit) from the query string: q 1..100 chars, limit 1..50 (default 20),
    lat/lng both or neither."""
    qs = request.query
    q = qs.get("q", "").strip()
    if not q:
        raise invalid("q", "required")
    if len(q) > 100:
        raise invalid("q", "at most 100 characters")
    limit = limit_param(request, default=20, maximum=50)
    lat = _number(qs["lat"], "lat", -90, 90) if qs.get("lat") else None
    lng = _number(qs["lng"], "lng", -180, 180) if qs.get("lng") else None
    if (lat is None) != (lng is None):
        raise invalid("lng" if lng is None else "lat", "lat and lng go together")
    return q, lat, lng, limit


@routes.get("/api/v1/search")
async def search(request: web.Request) -> web.Response:
    await require_user(request)
    q, lat, lng, limit = search_params(request)
    try:
        result = await services(request).search.search(q, lat, lng, limit)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError):
        raise ApiError("unavailable", "search is unavailable, retry shortly") from None
    return json_response(result)


# ---------------------------------------------------------------- wiring


def setup(app: web.Application) -> None:
    app.add_routes(routes)
