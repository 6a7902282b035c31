"""A vendor's standing auto-bid rules (docs/AI.md "Auto-bid"):

    PUT    /api/v1/vendors/{id}/autobid  {rules: [{category, minPriceKobo, radiusKm, prepMinutes?, details?}]}
           -> 200 {rules}: the rules become exactly these (an empty list turns auto-bid off)
    GET    /api/v1/vendors/{id}/autobid  -> {rules}
    DELETE /api/v1/vendors/{id}/autobid  -> 204

The vendor's owner only (ADMIN may read); another VENDOR 403, other roles 403, an unknown
vendor (or an id that is not a uuid) 404. One rule per category (compared trimmed and
case-insensitively), at most AUTOBID_MAX_RULES. Rules act only while FEATURE_AUTO_BID is on.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from msgspec import Meta

from engine import limits
from engine.autobid import Rule
from engine.clock import iso
from persistence import autobid as autobid_db
from persistence import catalogue as catalogue_db
from pocho_rt.auth.principal import require_user
from pocho_rt.auth.tokens import Principal
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import body, json_response
from pocho_rt.validation import Schema

routes = web.RouteTableDef()
_PATH = "/api/v1/vendors/{id}/autobid"


class RuleIn(Schema, frozen=True):
    category: Annotated[str, Meta(min_length=1, max_length=limits.CATEGORY_MAX_LENGTH, pattern=r"\S")]
    min_price_kobo: Annotated[int, Meta(ge=1, le=limits.MAX_PRICE_KOBO)]
    radius_km: Annotated[float, Meta(gt=0, le=limits.AUTOBID_MAX_RADIUS_KM)]
    prep_minutes: Annotated[int, Meta(ge=limits.PREP_MINUTES_MIN, le=limits.PREP_MINUTES_MAX)] | None = None
    details: Annotated[str, Meta(max_length=limits.DETAILS_MAX_LENGTH)] | None = None


class RulesIn(Schema, frozen=True):
    rules: Annotated[list[RuleIn], Meta(max_length=limits.AUTOBID_MAX_RULES)]


def _rule_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "category": row["category"],
        "minPriceKobo": row["min_price_kobo"],
        "radiusKm": row["radius_km"],
        "prepMinutes": row["prep_minutes"],
        "details": row["details"],
        "createdAt": iso(row["created_at"]),
    }


async def _vendor(request: web.Request, *, write: bool) -> tuple[Principal, uuid.UUID]:
    p = await require_user(request, "VENDOR", "ADMIN")
    if write and p.role != "VENDOR":
        raise ApiError("forbidden", "only the vendor's owner may change its auto-bid rules")
    try:
        vendor_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise ApiError("not_found", "no such vendor") from None
    row = await catalogue_db.get_vendor(services(request).pool, vendor_id)
    if row is None:
        raise ApiError("not_found", "no such vendor")
    if p.role == "VENDOR" and str(row["user_id"]) != p.user_id:
        raise ApiError("forbidden", "only the vendor's owner may see or change its auto-bid rules")
    return p, vendor_id


@routes.put(_PATH)
async def put_rules(request: web.Request) -> web.Response:
    _, vendor_id = await _vendor(request, write=True)
    data = await body(request, RulesIn)
    seen: set[str] = set()
    for r in data.rules:
        key = autobid_db.normal_category(r.category)
        if key in seen:
            raise ApiError(
                "invalid", f"invalid rules: two rules for category {key!r}", {"rules": "one rule per category"}
            )
        seen.add(key)
    new = [
        Rule(str(vendor_id), r.category, r.min_price_kobo, r.radius_km, r.prep_minutes, r.details) for r in data.rules
    ]
    stored = await autobid_db.replace_rules(services(request).pool, vendor_id, new)
    return json_response({"rules": [_rule_view(r) for r in stored]})


@routes.get(_PATH)
async def get_rules(request: web.Request) -> web.Response:
    _, vendor_id = await _vendor(request, write=False)
    return json_response(
        {"rules": [_rule_view(r) for r in await autobid_db.rules_of(services(request).pool, vendor_id)]}
    )


@routes.delete(_PATH)
async def delete_rules(request: web.Request) -> web.Response:
    _, vendor_id = await _vendor(request, write=True)
    await autobid_db.delete_rules(services(request).pool, vendor_id)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
