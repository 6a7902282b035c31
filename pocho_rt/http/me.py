"""HTTP routes: the signed-in user (PROTOCOL "The signed-in user"; docs/USERS.md).

    GET    /api/v1/me                    profile
    PATCH  /api/v1/me {firstName?, lastName?, email?, locale?, avatarUrl?}
                                         profile; `email`, `locale`, `avatarUrl` may be null
                                         (cleared); `phone` is refused: use /me/phone
    POST   /api/v1/me/phone {phone}      202 {expiresIn}: a code is texted to the new number
    POST   /api/v1/me/phone/confirm {code}   profile with the new, verified phone
    POST   /api/v1/me/password {current, new}   204; every other session ends
    GET    /api/v1/me/sessions           {sessions: [{sid, createdAt, lastUsedAt, userAgent,
                                         ipPrefix, current}]}: live sessions, newest activity first
    DELETE /api/v1/me/sessions/{sid}     204; that session's sockets get session:revoked
    GET    /api/v1/me/export             everything stored about the user (pocho_rt.user_data)
    DELETE /api/v1/me {password}         204; erasure (pocho_rt.user_data)

Every route needs a bearer access token of the account (any role).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from aiohttp import web

from engine.clock import iso
from persistence import refresh_tokens
from persistence import users as users_db
from persistence.audit import audit
from pocho_rt import ratelimit, user_data
from pocho_rt.auth import recovery
from pocho_rt.auth.passwords import hash_password, verify_password
from pocho_rt.auth.principal import require_user
from pocho_rt.auth.refresh import end_families
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.accounts import Code, Email, Name, Phone
from pocho_rt.http.middleware import body, json_response
from pocho_rt.logs import request_id
from pocho_rt.metrics import ACCOUNT_EVENTS
from pocho_rt.validation import Schema
from pocho_rt.views import user_view

routes = web.RouteTableDef()
Locale = Annotated[str, msgspec.Meta(max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
AvatarUrl = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^https://[^\s]+$")]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
AnyPassword = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
UNSET = msgspec.UNSET


class ProfileIn(Schema, frozen=True):
    first_name: Name | msgspec.UnsetType = UNSET
    last_name: Name | msgspec.UnsetType = UNSET
    email: Email | msgspec.UnsetType | None = UNSET
    locale: Locale | msgspec.UnsetType | None = UNSET
    avatar_url: AvatarUrl | msgspec.UnsetType | None = UNSET
    phone: str | msgspec.UnsetType | None = UNSET  # refused with a pointer to /me/phone


class PhoneIn(Schema, frozen=True):
    phone: Phone


class CodeIn(Schema, frozen=True):
    code: Code


class PasswordIn(Schema, frozen=True):
    current: AnyPassword
    new: Password


class EraseIn(Schema, frozen=True):
    password: AnyPassword


def profile_view(row: Any) -> dict[str, Any]:
    """PROTOCOL `user` plus the profile fields only its owner sees."""
    return {**user_view(row), "locale": row["locale"], "avatarUrl": row["avatar_url"]}


async def _user(request: web.Request, user_id: str) -> Any:
    svc = services(request)
    row = await users_db.user_by_id(svc.pool, svc.pii, user_id)
    if row is None or row["erased_at"] is not None:
        raise ApiError("unauthorized", "the account of this token no longer exists")
    return row


@routes.get("/api/v1/me")
async def get_me(request: web.Request) -> web.Response:
    principal = await require_user(request)
    return json_response(profile_view(await _user(request, principal.user_id)))


@routes.patch("/api/v1/me")
async def patch_me(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, ProfileIn)
    if data.phone is not UNSET:
        raise ApiError(
            "invalid",
            "the phone number changes with a code: POST /api/v1/me/phone",
            {"phone": "use POST /api/v1/me/phone"},
        )
    changes: dict[str, Any] = {}
    for field, column in (
        ("first_name", "first_name"),
        ("last_name", "last_name"),
        ("email", "email"),
        ("locale", "locale"),
        ("avatar_url", "avatar_url"),
    ):
        value = getattr(data, field)
        if value is not UNSET:
            changes[column] = value.strip() if isinstance(value, str) and column.endswith("_name") else value
    for column, wire in (("first_name", "firstName"), ("last_name", "lastName")):
        if column in changes and not changes[column]:
            raise ApiError("invalid", f"invalid {wire}: blank", {wire: "must not be blank"})
    if not changes:
        raise ApiError("invalid", "nothing to change", {"body": "give at least one field"})
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await users_db.update_profile(conn, svc.pii, principal.user_id, changes)
        if row is None or row["erased_at"] is not None:
            raise ApiError("unauthorized", "the account of this token no longer exists")
        await audit(
            conn,
            "user.profile_updated",
            actor_id=principal.user_id,
            details={"fields": sorted(changes)},  # which fields, never their values
            request_id=request_id.get(),
        )
    return json_response(profile_view(row))


@routes.post("/api/v1/me/phone")
async def change_phone(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, PhoneIn)
    svc = services(request)
    await ratelimit.hit(svc, ratelimit.PHONE_CHANGE_PER_USER, principal.user_id)
    try:
        expires_in = await recovery.request_phone_change(svc, principal.user_id, data.phone)
    except ApiError:  # refused, nothing texted: the attempt does not count
        await ratelimit.release(svc, ratelimit.PHONE_CHANGE_PER_USER, principal.user_id)
        raise
    return json_response({"expiresIn": expires_in}, 202)


@routes.post("/api/v1/me/phone/confirm")
async def confirm_phone(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, CodeIn)
    await recovery.confirm_phone_change(services(request), principal.user_id, data.code)
    return json_response(profile_view(await _user(request, principal.user_id)))


async def _check_password(request: web.Request, user_id: str, password: str, field: str) -> None:
    """The caller's own password, for changes that need it (`invalid` naming `field` if wrong).
    Like login, the limit's slot is taken before the check and handed back on success, so
    only wrong passwords count."""
    svc = services(request)
    await ratelimit.hit(svc, ratelimit.PASSWORD_CHANGE_PER_USER, user_id)
    user = await _user(request, user_id)
    if not await verify_password(user["password_hash"], password):
        what = "the current password" if field == "current" else "the password"
        raise ApiError("invalid", f"{what} is wrong", {field: "wrong password"})
    await ratelimit.release(svc, ratelimit.PASSWORD_CHANGE_PER_USER, user_id)


@routes.post("/api/v1/me/password")
async def change_password(request: web.Request) -> web.Response:
    """Needs the current password; ends every session but the caller's."""
    principal = await require_user(request)
    data = await body(request, PasswordIn)
    svc = services(request)
    await _check_password(request, principal.user_id, data.current, "current")
    new_hash = await hash_password(data.new)
    async with svc.pool.acquire() as conn, conn.transaction():
        await users_db.set_password(conn, principal.user_id, new_hash)
        others = await refresh_tokens.revoke_user_families(conn, principal.user_id, keep_family=principal.sid)
        await audit(
            conn,
            "auth.password_changed",
            actor_id=principal.user_id,
            details={"sessionsEnded": len(others)},
            request_id=request_id.get(),
        )
    ACCOUNT_EVENTS.labels("password_changed").inc()
    await end_families(svc, others, "password_changed")
    return web.Response(status=204)


def _session_view(row: Any, current_sid: str) -> dict[str, Any]:
    return {
        "sid": row["family_id"],
        "createdAt": iso(row["created_at"]),
        "lastUsedAt": iso(row["last_used_at"]),
        "userAgent": row["user_agent"],
        "ipPrefix": row["ip_prefix"],
        "current": row["family_id"] == current_sid,
    }


@routes.get("/api/v1/me/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    principal = await require_user(request)
    rows = await refresh_tokens.live_sessions(services(request).pool, principal.user_id)
    return json_response({"sessions": [_session_view(r, principal.sid) for r in rows]})


@routes.delete("/api/v1/me/sessions/{sid}")
async def end_session(request: web.Request) -> web.Response:
    principal = await require_user(request)
    sid = request.match_info["sid"]
    try:
        uuid.UUID(sid)
    except ValueError:
        raise ApiError("not_found", "no such session") from None
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        if not await refresh_tokens.revoke_user_family(conn, principal.user_id, sid):
            raise ApiError("not_found", "no such session")
        await audit(
            conn,
            "auth.session_ended",
            actor_id=principal.user_id,
            target_kind="session",
            target_id=sid,
            request_id=request_id.get(),
        )
    ACCOUNT_EVENTS.labels("session_ended").inc()
    await end_families(svc, [sid], "session_ended")
    return web.Response(status=204)


@routes.get("/api/v1/me/export")
async def export(request: web.Request) -> web.Response:
    principal = await require_user(request)
    svc = services(request)
    await ratelimit.hit(svc, ratelimit.EXPORT_PER_USER, principal.user_id)
    document = await user_data.export(svc, principal.user_id)
    return json_response(
        document,
        headers={"Content-Disposition": 'attachment; filename="pocho-export.json"', "Cache-Control": "no-store"},
    )


@routes.delete("/api/v1/me")
async def erase(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, EraseIn)
    svc = services(request)
    await _check_password(request, principal.user_id, data.password, "password")
    await user_data.erase(svc, principal.user_id)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
