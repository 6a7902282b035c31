"""HTTP routes: ops control of accounts (PROTOCOL "Ops").

    GET  /admin/users?role=&q=&cursor=&limit=   {users: [...], nextCursor}: newest first;
                                 q = exact phone, exact email, user id, or part of a name;
                                 limit 1..200, default 50
    POST /admin/users/{id}/disable {reason}     200 {user, offersWithdrawn}; idempotent
    POST /admin/users/{id}/enable               200 {user}; idempotent

Access as every admin route (`require_admin`): an ADMIN bearer token or X-Admin-Key.
What disabling does, on every node, is told in `pocho_rt.account_control`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from aiohttp import web

from engine.clock import iso
from persistence import orders as orders_db
from persistence import users as users_db
from pocho_rt import account_control
from pocho_rt.auth.principal import require_admin
from pocho_rt.auth.tokens import ROLES
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.me import profile_view
from pocho_rt.http.middleware import body, json_response
from pocho_rt.http.pagination import limit_param
from pocho_rt.validation import Schema

routes = web.RouteTableDef()
_MAX_Q = 128


class DisableIn(Schema, frozen=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


def admin_user_view(row: Any) -> dict[str, Any]:
    """What ops see of an account: the profile plus its state."""
    return {
        **profile_view(row),
        "disabled": row["disabled"],
        "disabledAt": iso(row["disabled_at"]) if row["disabled_at"] else None,
        "disabledReason": row["disabled_reason"],
        "erasedAt": iso(row["erased_at"]) if row["erased_at"] else None,
    }


def _user_id(request: web.Request) -> str:
    try:
        return str(uuid.UUID(request.match_info["id"]))
    except ValueError:
        raise ApiError("not_found", "user not found") from None


@routes.get("/admin/users")
async def list_users(request: web.Request) -> web.Response:
    await require_admin(request)
    limit = limit_param(request, default=50, maximum=200)
    role = request.query.get("role") or None
    if role is not None and role not in ROLES:
        raise ApiError("invalid", f"invalid role: one of {', '.join(ROLES)}", {"role": "unknown role"})
    q = (request.query.get("q") or "").strip() or None
    if q is not None and len(q) > _MAX_Q:
        raise ApiError("invalid", f"invalid q: at most {_MAX_Q} characters", {"q": "too long"})
    after = None
    if cursor := request.query.get("cursor"):
        after = orders_db.decode_cursor(cursor)
        if after is None:
            raise ApiError("invalid", "invalid cursor: use nextCursor as given", {"cursor": "not a cursor"})
    svc = services(request)
    rows = await users_db.list_users(svc.pool, svc.pii, role=role, q=q, after=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return json_response(
        {
            "users": [admin_user_view(r) for r in page],
            "nextCursor": orders_db.encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if more else None,
        }
    )


def _admin(principal: Any) -> str | None:
    return principal.user_id if principal is not None else None


@routes.post("/admin/users/{id}/disable")
async def disable_user(request: web.Request) -> web.Response:
    principal = await require_admin(request)
    user_id = _user_id(request)
    data = await body(request, DisableIn)
    if not data.reason.strip():
        raise ApiError("invalid", "invalid reason: blank", {"reason": "must not be blank"})
    change = await account_control.disable(services(request), user_id, data.reason.strip(), _admin(principal))
    return json_response({"user": admin_user_view(change.user), "offersWithdrawn": change.offers_withdrawn})


@routes.post("/admin/users/{id}/enable")
async def enable_user(request: web.Request) -> web.Response:
    principal = await require_admin(request)
    change = await account_control.enable(services(request), _user_id(request), _admin(principal))
    return json_response({"user": admin_user_view(change.user)})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
