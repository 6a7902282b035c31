"""Marketplace analytics (docs/ANALYTICS.md), read from the rollups of persistence.analytics.

    GET /api/v1/analytics/overview?from=YYYY-MM-DD&to=YYYY-MM-DD&tz=Africa/Lagos[&vendorId=]
        ADMIN: the whole marketplace (or one vendor with `vendorId`); VENDOR: itself only
        (another `vendorId` is 403); any other role 403, no token 401.

`from` and `to` are local days in `tz` (an IANA zone, default UTC), both included, at most
366 days apart; without them the window is the 30 days ending today in `tz`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from aiohttp import web

from engine.clock import iso
from engine.limits import ANALYTICS_DEFAULT_DAYS, ANALYTICS_MAX_DAYS, ANALYTICS_TOP_CATEGORIES
from persistence import analytics as analytics_db
from persistence import catalogue as catalogue_db
from pocho_rt.auth.principal import require_user
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import json_response

routes = web.RouteTableDef()


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError("invalid", f"invalid {field}: {reason}", {field: reason})


def _zone(raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("tz", "must be an IANA time zone such as Africa/Lagos") from None


def _day(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _invalid(name, "must be a date YYYY-MM-DD") from None


def _window(request: web.Request) -> tuple[date, date, ZoneInfo]:
    zone = _zone(request.query.get("tz", "UTC"))
    first, last = _day(request, "from"), _day(request, "to")
    if last is None:
        last = datetime.now(zone).date() if first is None else first + timedelta(days=ANALYTICS_DEFAULT_DAYS - 1)
    if first is None:
        first = last - timedelta(days=ANALYTICS_DEFAULT_DAYS - 1)
    if last < first:
        raise _invalid("to", "must not be before from")
    if (last - first).days + 1 > ANALYTICS_MAX_DAYS:
        raise _invalid("to", f"the window is at most {ANALYTICS_MAX_DAYS} days")
    return first, last, zone


async def _scope(request: web.Request) -> uuid.UUID:
    """Whose figures: ADMIN the marketplace or `vendorId`; a VENDOR always its own."""
    p = await require_user(request, "ADMIN", "VENDOR")
    raw = request.query.get("vendorId")
    asked: uuid.UUID | None = None
    if raw is not None:
        try:
            asked = uuid.UUID(raw)
        except ValueError:
            raise _invalid("vendorId", "must be a vendor id") from None
    if p.role == "ADMIN":
        return analytics_db.MARKETPLACE if asked is None else asked
    row = await catalogue_db.vendor_by_user(services(request).pool, p.user_id)
    if row is None:
        raise ApiError("forbidden", "create your vendor profile first")
    own: uuid.UUID = row["id"]
    if asked is not None and asked != own:
        raise ApiError("forbidden", "a vendor sees only its own analytics")
    return own


def _seconds(bin_value: float | None) -> float | None:
    return None if bin_value is None else round(bin_value, 1)


def _minutes(bin_value: float | None) -> float | None:
    return None if bin_value is None else round(bin_value / 60.0, 1)


def _counts(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "orders": row["orders_created"],
        "grossOrderValueKobo": row["gross_kobo"],
        "requestsCreated": row["requests_created"],
        "requestsAccepted": row["requests_accepted"],
        "requestsExpired": row["requests_expired"],
        "offersPlaced": row["offers_placed"],
        "offersAccepted": row["offers_accepted"],
        "delivered": row["orders_delivered"],
        "canceled": row["orders_canceled"],
    }


@routes.get("/api/v1/analytics/overview")
async def overview(request: web.Request) -> web.Response:
    scope = await _scope(request)
    first, last, zone = _window(request)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    pool = services(request).pool
    days, cats, quantiles = await analytics_db.overview(
        pool, scope, start, end, zone.key, first, last, ANALYTICS_TOP_CATEGORIES
    )
    totals, series = days[0], days[1:]
    q = {r["metric"]: r for r in quantiles}

    def value(metric: int, which: str) -> float | None:
        row = q.get(metric)
        return None if row is None else row[which]

    placed, accepted = totals["offers_placed"], totals["offers_accepted"]
    rounds = value(analytics_db.ROUNDS, "p50")
    body = {
        "scope": {"vendorId": None if scope == analytics_db.MARKETPLACE else str(scope)},
        "from": first.isoformat(),
        "to": last.isoformat(),
        "tz": zone.key,
        "grossOrderValueKobo": totals["gross_kobo"],
        "orders": totals["orders_created"],
        "ordersByStatus": {status: totals[col] for status, col in analytics_db.STATUS_COLUMNS.items()},
        "requests": {
            "created": totals["requests_created"],
            "accepted": totals["requests_accepted"],
            "expired": totals["requests_expired"],
            "cancelled": totals["requests_cancelled"],
        },
        "offers": {"placed": placed, "accepted": accepted},
        "offerAcceptanceRate": round(accepted / placed, 4) if placed else None,
        "medianTimeToFirstOfferSeconds": _seconds(value(analytics_db.TTFO, "p50")),
        "medianNegotiationRounds": None if rounds is None else int(rounds),
        "deliveryMinutes": {
            "median": _minutes(value(analytics_db.DELIVERY, "p50")),
            "p90": _minutes(value(analytics_db.DELIVERY, "p90")),
        },
        "topCategories": [
            {"category": r["category"], "orders": r["orders"], "grossOrderValueKobo": r["gross_kobo"]} for r in cats
        ],
        "daily": [{"date": r["day"].isoformat(), **_counts(r)} for r in series],
        "refreshedAt": iso(await analytics_db.refreshed_at(pool)),
    }
    return json_response(body)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
