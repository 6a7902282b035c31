"""GET /api/v1/meal-requests[/{id}]: the stored (committed) state of meal requests.

Customers see their own requests, admins everyone's; a vendor sees the open requests
within its service area (list) and any request it may bid on or has bid on (detail,
with only its own offers).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from engine.negotiation import covers
from persistence.negotiation import list_requests, request_detail
from pocho_rt.auth.principal import require_user
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import json_response

routes = web.RouteTableDef()
_STATUSES = {"open": ("OPEN",), "closed": ("ACCEPTED", "CANCELLED", "EXPIRED"), "expired": ("EXPIRED",),
             "accepted": ("ACCEPTED",), "cancelled": ("CANCELLED",)}


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise ApiError("invalid", "limit must be 1..200", {"limit": "must be an integer 1..200"})
    return int(raw)


@routes.get("/api/v1/meal-requests")
async def list_meal_requests(request: web.Request) -> web.Response:
    p = await require_user(request, "CUSTOMER", "VENDOR", "ADMIN")
    svc = services(request)
    status = request.query.get("status", "open")
    if status not in _STATUSES:
        raise ApiError("invalid", "unknown status", {"status": f"one of {', '.join(_STATUSES)}"})
    limit = _limit(request)
    before = None
    if "before" in request.query:
        try:
            before = datetime.fromisoformat(request.query["before"].replace("Z", "+00:00"))
        except ValueError:
            raise ApiError("invalid", "before must be an ISO-8601 time", {"before": "invalid time"}) from None
    if p.role == "VENDOR":
        assert svc.engine is not None
        vendor = await svc.engine.vendor_profile(p.user_id)
        if vendor is None or not vendor.verified:
            raise ApiError("forbidden", "only verified vendors see requests")
        if status != "open":
            raise ApiError("invalid", "vendors list open requests only", {"status": "must be open"})
        return json_response({"requests": (await svc.engine.requests_near(vendor))[:limit]})
    items = await list_requests(svc.pool, customer_id=None if p.role == "ADMIN" else p.user_id,
                                statuses=_STATUSES[status], limit=limit, before=before)
    return json_response({"requests": items})


@routes.get("/api/v1/meal-requests/{id}")
async def get_meal_request(request: web.Request) -> web.Response:
    p = await require_user(request, "CUSTOMER", "VENDOR", "ADMIN")
    svc = services(request)
    found = await request_detail(svc.pool, request.match_info["id"])
    if found is None:
        raise ApiError("not_found", "no such meal request")
    req, offers = found
    if p.role == "CUSTOMER" and req["customerId"] != p.user_id:
        raise ApiError("not_found", "no such meal request")  # do not reveal others' requests
    if p.role == "VENDOR":
        assert svc.engine is not None
        vendor = await svc.engine.vendor_profile(p.user_id)
        offers = [o for o in offers if vendor is not None and o["vendorId"] == vendor.id]
        may_bid = (vendor is not None and vendor.verified and req["status"] == "OPEN"
                   and covers(vendor.lat, vendor.lng, vendor.km, req["deliveryLat"], req["deliveryLng"]))
        if not offers and not may_bid:  # same rule as request:watch on /vendor
            raise ApiError("not_found", "no such meal request")
    return json_response({"request": req, "offers": offers})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
