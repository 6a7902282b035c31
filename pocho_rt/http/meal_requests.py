"""GET /api/v1/meal-requests[/{id}]: the stored (committed) state of meal requests.

Customers see their own requests, admins everyone's; a vendor sees the open requests
within its service area (list) and any request it may bid on or has bid on (detail,
with only its own offers; `engine.negotiation_views.vendor_may_view`, the rule request:watch
on /vendor applies too).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from engine.negotiation_views import vendor_may_view
from persistence.negotiation import list_requests, request_with_offers
from pocho_rt.auth.principal import require_user
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import json_response
from pocho_rt.http.pagination import limit_param
from pocho_rt.views import offer_row_view, request_row_view

routes = web.RouteTableDef()
_STATUSES = {
    "open": ("OPEN",),
    "closed": ("ACCEPTED", "CANCELLED", "EXPIRED"),
    "expired": ("EXPIRED",),
    "accepted": ("ACCEPTED",),
    "cancelled": ("CANCELLED",),
}


def _not_found() -> ApiError:
    return ApiError("not_found", "no such meal request")


@routes.get("/api/v1/meal-requests")
async def list_meal_requests(request: web.Request) -> web.Response:
    p = await require_user(request, "CUSTOMER", "VENDOR", "ADMIN")
    svc = services(request)
    status = request.query.get("status", "open")
    if status not in _STATUSES:
        raise ApiError("invalid", "unknown status", {"status": f"one of {', '.join(_STATUSES)}"})
    limit = limit_param(request, default=50, maximum=200)
    before = None
    if "before" in request.query:
        try:
            before = datetime.fromisoformat(request.query["before"].replace("Z", "+00:00"))
        except ValueError:
            raise ApiError("invalid", "before must be an ISO-8601 time", {"before": "invalid time"}) from None
    if p.role == "VENDOR":
        vendor = await svc.negotiation.vendor_profile(p.user_id)
        if vendor is None or not vendor.verified:
            raise ApiError("forbidden", "only verified vendors see requests")
        if status != "open":
            raise ApiError("invalid", "vendors list open requests only", {"status": "must be open"})
        return json_response({"requests": (await svc.negotiation.requests_near(vendor))[:limit]})
    rows = await list_requests(
        svc.pool,
        svc.pii,
        customer_id=None if p.role == "ADMIN" else p.user_id,
        statuses=_STATUSES[status],
        limit=limit,
        before=before,
    )
    return json_response({"requests": [request_row_view(r) for r in rows]})


@routes.get("/api/v1/meal-requests/{id}")
async def get_meal_request(request: web.Request) -> web.Response:
    p = await require_user(request, "CUSTOMER", "VENDOR", "ADMIN")
    svc = services(request)
    found = await request_with_offers(svc.pool, svc.pii, request.match_info["id"])
    if found is None:
        raise _not_found()
    req, offers = found
    if p.role == "CUSTOMER" and str(req["customer_id"]) != p.user_id:
        raise _not_found()  # do not reveal others' requests
    if p.role == "VENDOR":
        vendor = await svc.negotiation.vendor_profile(p.user_id)
        if vendor is None:
            raise _not_found()
        offers = [o for o in offers if str(o["vendor_id"]) == vendor.id]
        if not vendor_may_view(
            status=req["status"],
            delivery_lat=req["delivery_lat"],
            delivery_lng=req["delivery_lng"],
            has_offer=bool(offers),
            vendor_verified=vendor.verified,
            vendor_lat=vendor.lat,
            vendor_lng=vendor.lng,
            vendor_km=vendor.km,
        ):
            raise _not_found()
    return json_response({"request": request_row_view(req), "offers": [offer_row_view(o) for o in offers]})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
