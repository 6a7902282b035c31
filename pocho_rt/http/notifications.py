"""HTTP routes of notifications (issue 10, docs/NOTIFICATIONS.md).

    PUT    /api/v1/me/devices {token, platform: ANDROID|IOS|WEB}   204; registers this device's
                                         push token for the caller's session (moved from another
                                         account or session if it was registered there); at most
                                         NOTIFY_MAX_DEVICES per user (409 limit_reached)
    GET    /api/v1/me/devices            {devices: [{platform, updatedAt, tokenSuffix}]}
    DELETE /api/v1/me/devices {token}    204; 404 when the caller has no such token
    GET    /api/v1/me/notifications      {quietHours: {start, end, timezone} | null}
    PUT    /api/v1/me/notifications {quietHours: {start: "HH:MM", end: "HH:MM", timezone?} | null}
                                         pushes that can wait are held until `end` (local time)
    GET    /admin/notifications?status=dead|skipped|pending|sent&limit=&before=
                                         {notifications: [...], next}: newest first, never the
                                         text, variables or phone

Logging out removes the tokens the session registered (pocho_rt.auth.refresh).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from engine.clock import iso
from engine.notify_policy import valid_zone
from persistence import notifications as store
from pocho_rt.auth.principal import require_admin, require_user
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import body, json_response
from pocho_rt.http.pagination import limit_param
from pocho_rt.validation import Schema

routes = web.RouteTableDef()

# FCM registration tokens are ~150-250 characters; APNs/web tokens via FCM look the same.
DeviceToken = Annotated[str, msgspec.Meta(min_length=20, max_length=4096, pattern=r"^[A-Za-z0-9_:\-.]+$")]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Zone = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
STATUSES = ("dead", "skipped", "pending", "sent")
DEFAULT_ZONE = "Africa/Lagos"


class DeviceIn(Schema, frozen=True):
    token: DeviceToken
    platform: Literal["ANDROID", "IOS", "WEB"]


class DeviceOut(Schema, frozen=True):
    token: DeviceToken


class QuietHoursIn(Schema, frozen=True):
    start: Clock
    end: Clock
    timezone: Zone = DEFAULT_ZONE


class SettingsIn(Schema, frozen=True):
    quiet_hours: QuietHoursIn | None


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@routes.put("/api/v1/me/devices")
async def put_device(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, DeviceIn)
    svc = services(request)
    cap = svc.settings.notify_max_devices
    async with svc.pool.acquire() as conn:
        ok = await store.put_device(conn, principal.user_id, data.token, data.platform, principal.sid, cap)
    if not ok:
        raise ApiError("limit_reached", f"at most {cap} devices per account; remove one first", {"token": "too many"})
    return web.Response(status=204)


@routes.get("/api/v1/me/devices")
async def list_devices(request: web.Request) -> web.Response:
    principal = await require_user(request)
    rows = await store.devices_of(services(request).pool, principal.user_id)
    devices = [
        {"platform": r["platform"], "updatedAt": iso(r["updated_at"]), "tokenSuffix": r["token"][-6:]} for r in rows
    ]
    return json_response({"devices": devices})


@routes.delete("/api/v1/me/devices")
async def delete_device(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, DeviceOut)
    if not await store.delete_device(services(request).pool, principal.user_id, data.token):
        raise ApiError("not_found", "no such device token on this account")
    return web.Response(status=204)


def _settings_view(row: Any) -> dict[str, Any]:
    if row is None or row["quiet_start"] is None:
        return {"quietHours": None}
    return {"quietHours": {"start": _clock(row["quiet_start"]), "end": _clock(row["quiet_end"]), "timezone": row["tz"]}}


@routes.get("/api/v1/me/notifications")
async def get_settings(request: web.Request) -> web.Response:
    principal = await require_user(request)
    return json_response(_settings_view(await store.quiet_hours(services(request).pool, principal.user_id)))


@routes.put("/api/v1/me/notifications")
async def put_settings(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, SettingsIn)
    q = data.quiet_hours
    if q is not None and not valid_zone(q.timezone):
        raise ApiError("invalid", "unknown time zone", {"quietHours.timezone": "not an IANA time zone name"})
    if q is not None and q.start == q.end:
        raise ApiError("invalid", "quiet hours must not start and end at once", {"quietHours.end": "equals start"})
    pool = services(request).pool
    quiet = (_minutes(q.start), _minutes(q.end)) if q is not None else None
    await store.set_quiet_hours(pool, principal.user_id, quiet, q.timezone if q is not None else DEFAULT_ZONE)
    return json_response(_settings_view(await store.quiet_hours(pool, principal.user_id)))


def _row_view(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "userId": r["user_id"],
        "channel": r["channel"],
        "kind": r["kind"],
        "status": r["status"],
        "outcome": r["outcome"],
        "attempts": r["attempts"],
        "lastError": r["last_error"],
        "createdAt": iso(r["created_at"]),
        "nextAttemptAt": iso(r["next_attempt_at"]),
        "sentAt": iso(r["sent_at"]) if r["sent_at"] is not None else None,
    }


@routes.get("/admin/notifications")
async def admin_list(request: web.Request) -> web.Response:
    await require_admin(request)
    status = request.query.get("status", "dead")
    if status not in STATUSES:
        raise ApiError("invalid", "invalid status", {"status": f"must be one of {', '.join(STATUSES)}"})
    limit = limit_param(request, default=50, maximum=500)
    before_raw = request.query.get("before")
    before = int(before_raw) if before_raw is not None and before_raw.isdigit() and len(before_raw) < 19 else None
    if before_raw is not None and before is None:
        raise ApiError("invalid", "invalid cursor", {"before": "must be a notification id"})
    rows = await store.listing(services(request).pool, status, limit, before)
    nxt = str(rows[-1]["id"]) if len(rows) == limit else None
    return json_response({"notifications": [_row_view(r) for r in rows], "next": nxt})


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
