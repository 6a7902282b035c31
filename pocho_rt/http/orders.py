"""HTTP reads of orders: the stored (committed) state, for the order's parties only.

    GET /api/v1/orders?role=&status=&cursor=&limit=   {orders, nextCursor}: the caller's own
        orders, newest first (ADMIN: everyone's). `role` defaults to the caller's and may only
        name it (else 403); `status` is one PROTOCOL status or several, comma-separated;
        `cursor` is the opaque `nextCursor` of the previous page; limit 1..100, default 20.
    GET /api/v1/orders/{id}                           {order}
    GET /api/v1/orders/{id}/events?sinceSeq=&limit=   {events: [{seq, event, data}]}: what the
        caller's audience received, oldest first (limit 1..1000, default 1000)
    GET /admin/orders/sla?kind=&limit=                {events}: ops records (SLA breaches,
        locked delivery codes), newest first (admin access as pocho_rt.http.admin)

Parties: the customer, the vendor's user and the assigned rider's user (and ADMIN); anyone
else gets 404, as for an unknown order. Only the customer's order carries `deliveryCode`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine import orders as o
from engine.limits import MAX_REPLAY_EVENTS, ORDER_LIST_DEFAULT, ORDER_LIST_MAX
from persistence import orders as orders_db
from pocho_rt.auth.principal import require_admin, require_user
from pocho_rt.auth.tokens import Principal
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import json_response
from pocho_rt.http.pagination import limit_param
from pocho_rt.views import ops_event_view, order_event_view, order_row_view

routes = web.RouteTableDef()
_ROLES = ("CUSTOMER", "VENDOR", "RIDER")
ADMIN = "admin"  # the audience of an ops reader: every event, no delivery code


def _not_found() -> ApiError:
    return ApiError("not_found", "no such order")


def _audience(p: Principal, row: Any) -> str:
    """The caller's part in the order; 404 when it has none."""
    if p.role == "ADMIN":
        return ADMIN
    user = p.user_id
    for audience, column in ((o.CUSTOMER, "customer_id"), (o.VENDOR, "vendor_user_id"), (o.RIDER, "rider_user_id")):
        if row[column] is not None and str(row[column]) == user:
            return audience
    raise _not_found()


async def _order_row(request: web.Request) -> tuple[Principal, Any, str]:
    p = await require_user(request, *_ROLES, "ADMIN")
    row = await orders_db.order_by_id(services(request).pool, request.match_info["id"])
    if row is None:
        raise _not_found()
    return p, row, _audience(p, row)


def _int_param(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "0")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError("invalid", f"invalid {name}: must be a whole number", {name: "must be a whole number"})
    return value


@routes.get("/api/v1/orders")
async def list_orders(request: web.Request) -> web.Response:
    p = await require_user(request, *_ROLES, "ADMIN")
    role = request.query.get("role")
    if role is not None and role.upper() != p.role:
        raise ApiError("forbidden", "you may list only your own orders (role must be your own)")
    statuses = None
    if raw := request.query.get("status"):
        statuses = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
        if not statuses or any(s not in o.STATUSES for s in statuses):
            reason = f"one or more of {', '.join(o.STATUSES)}"
            raise ApiError("invalid", f"invalid status: {reason}", {"status": reason})
    after = None
    if cursor := request.query.get("cursor"):
        after = orders_db.decode_cursor(cursor)
        if after is None:
            raise ApiError("invalid", "invalid cursor: use nextCursor as given", {"cursor": "not a cursor"})
    limit = limit_param(request, default=ORDER_LIST_DEFAULT, maximum=ORDER_LIST_MAX)
    rows = await orders_db.list_orders(
        services(request).pool, role=p.role, user_id=p.user_id, statuses=statuses, after=after, limit=limit + 1
    )
    page = rows[:limit]
    more = len(rows) > limit
    customer = p.role == "CUSTOMER"
    return json_response(
        {
            "orders": [order_row_view(r, customer=customer) for r in page],
            "nextCursor": orders_db.encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if more else None,
        }
    )


@routes.get("/api/v1/orders/{id}")
async def get_order(request: web.Request) -> web.Response:
    _, row, audience = await _order_row(request)
    return json_response({"order": order_row_view(row, customer=audience == o.CUSTOMER)})


@routes.get("/api/v1/orders/{id}/events")
async def order_events(request: web.Request) -> web.Response:
    _, row, audience = await _order_row(request)
    since = _int_param(request, "sinceSeq")
    limit = limit_param(request, default=MAX_REPLAY_EVENTS, maximum=MAX_REPLAY_EVENTS)
    rows = await orders_db.events_since(services(request).pool, str(row["id"]), since, limit)
    customer = audience == o.CUSTOMER
    events = [
        order_event_view(r, code=row["delivery_code"], customer=customer)
        for r in rows
        if audience == ADMIN or audience in r["audiences"]
    ]
    return json_response({"events": events})


@routes.get("/admin/orders/sla")
async def sla_events(request: web.Request) -> web.Response:
    await require_admin(request)
    limit = limit_param(request, default=50, maximum=500)
    rows = await orders_db.ops_events_recent(services(request).pool, limit, request.query.get("kind") or None)
    return json_response({"events": [ops_event_view(r) for r in rows]})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
