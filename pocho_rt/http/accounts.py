"""HTTP routes: accounts (PROTOCOL "Accounts and tokens").

Handlers validate, call pocho_rt.auth / persistence, answer. Logs never carry full phone
numbers, tokens, codes or passwords.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from persistence import users as users_db
from persistence.audit import audit
from pocho_rt import ratelimit
from pocho_rt.auth import refresh, totp, verification
from pocho_rt.auth.audit import mask_phone
from pocho_rt.auth.passwords import hash_password, verify_password
from pocho_rt.auth.principal import require_user
from pocho_rt.context import Services, services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import body, json_response
from pocho_rt.logs import request_id
from pocho_rt.validation import Schema
from pocho_rt.views import user_view

routes = web.RouteTableDef()
log = logging.getLogger("pocho.auth")

Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[0-9]{8,15}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RegisterIn(Schema, frozen=True):
    phone: Phone
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
    role: Literal["CUSTOMER", "VENDOR", "RIDER"]
    first_name: Name
    last_name: Name
    email: Email | None = None


class LoginIn(Schema, frozen=True):
    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    totp: Code | None = None


class RefreshIn(Schema, frozen=True):
    refresh_token: Token
    sid: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # the session: enables the retry grace


class CodeIn(Schema, frozen=True):
    code: Code


@routes.post("/api/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    data = await body(request, RegisterIn)
    for field, value in (("firstName", data.first_name), ("lastName", data.last_name)):
        if not value.strip():
            raise ApiError("invalid", f"invalid {field}: blank", {field: "must not be blank"})
    svc = services(request)
    password_hash = await hash_password(data.password)
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.create_user(
            conn,
            svc.pii,
            phone=data.phone,
            password_hash=password_hash,
            role=data.role,
            first_name=data.first_name.strip(),
            last_name=data.last_name.strip(),
            email=data.email,
        )
        if user is None:
            raise ApiError("conflict", "this phone number is already registered", {"phone": "already registered"})
        user_id = str(user["id"])
        tokens = await refresh.start_session(conn, svc, user_id, user["role"], refresh.ClientInfo.of(request))
        await audit(conn, "auth.register", actor_id=user_id, details={"role": data.role}, request_id=request_id.get())
    return json_response({"user": user_view(user), "tokens": tokens}, 201)


def _login_failed(phone: str, reason: str) -> ApiError:
    log.warning("login failed", extra={"phone": mask_phone(phone), "reason": reason})
    return ApiError("unauthorized", "wrong phone number or password")


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    data = await body(request, LoginIn)
    svc = services(request)
    ip = ratelimit.client_ip(request)
    # Slots are taken before the password check and handed back on success, so the
    # limits count failures and a parallel burst of guesses cannot overshoot them.
    await ratelimit.hit(svc, ratelimit.LOGIN_PER_IP, ip)
    await ratelimit.hit(svc, ratelimit.LOGIN_PER_PHONE, data.phone)
    user = await users_db.user_by_phone(svc.pool, svc.pii, data.phone)
    if not await verify_password(user["password_hash"] if user else None, data.password) or user is None:
        if user is not None:
            await audit(
                svc.pool,
                "auth.login_failed",
                actor_id=str(user["id"]),
                details={"reason": "password"},
                request_id=request_id.get(),
            )
        raise _login_failed(data.phone, "password")
    user_id = str(user["id"])
    if user["totp_enabled"]:
        if data.totp is None:
            await _release(svc, ip, data.phone)
            raise ApiError("totp_required", "a TOTP code is required for this account", {"totp": "required"})
        step = totp.match_step(user["totp_secret"], data.totp)
        if step is None or not await totp.claim_step(svc.redis, user_id, step):
            await audit(
                svc.pool, "auth.login_failed", actor_id=user_id, details={"reason": "totp"}, request_id=request_id.get()
            )
            raise _login_failed(data.phone, "totp")
    if user["disabled"]:
        await _release(svc, ip, data.phone)
        raise ApiError("forbidden", "this account is disabled")
    await _release(svc, ip, data.phone)
    async with svc.pool.acquire() as conn, conn.transaction():
        tokens = await refresh.start_session(conn, svc, user_id, user["role"], refresh.ClientInfo.of(request))
        await audit(conn, "auth.login", actor_id=user_id, request_id=request_id.get())
    return json_response({"user": user_view(user), "tokens": tokens})


async def _release(svc: Services, ip: str, phone: str) -> None:
    await ratelimit.release(svc, ratelimit.LOGIN_PER_IP, ip)
    await ratelimit.release(svc, ratelimit.LOGIN_PER_PHONE, phone)


@routes.post("/api/v1/auth/refresh")
async def refresh_tokens(request: web.Request) -> web.Response:
    data = await body(request, RefreshIn)
    tokens = await refresh.rotate(
        services(request), data.refresh_token, sid=data.sid, client=refresh.ClientInfo.of(request)
    )
    return json_response({"tokens": tokens})


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    data = await body(request, RefreshIn)
    await refresh.logout(services(request), data.refresh_token)
    return web.Response(status=204)


@routes.post("/api/v1/auth/2fa/setup")
async def totp_setup(request: web.Request) -> web.Response:
    principal = await require_user(request)
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, principal.user_id, for_update=True)
        if user is None:
            raise ApiError("unauthorized", "unknown account")
        if user["totp_enabled"]:
            raise ApiError("conflict", "two-factor authentication is already enabled; disable it first")
        secret = totp.new_secret()
        await users_db.set_totp_secret(conn, principal.user_id, secret, enabled=False)
    return json_response({"secret": secret, "otpauthUri": totp.provisioning_uri(secret, user["phone"])})


async def _totp_switch(request: web.Request, enable: bool) -> web.Response:
    principal = await require_user(request)
    data = await body(request, CodeIn)
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, principal.user_id, for_update=True)
        if user is None:
            raise ApiError("unauthorized", "unknown account")
        if user["totp_enabled"] == enable:
            raise ApiError("conflict", f"two-factor authentication is already {'en' if enable else 'dis'}abled")
        if user["totp_secret"] is None:
            raise ApiError("conflict", "call /api/v1/auth/2fa/setup first")
        if totp.match_step(user["totp_secret"], data.code) is None:
            raise ApiError("invalid", "wrong or expired code", {"code": "wrong code"})
        await users_db.set_totp_secret(conn, principal.user_id, user["totp_secret"] if enable else None, enabled=enable)
        await audit(
            conn,
            "auth.2fa_enable" if enable else "auth.2fa_disable",
            actor_id=principal.user_id,
            request_id=request_id.get(),
        )
    return json_response({"totpEnabled": enable})


@routes.post("/api/v1/auth/2fa/enable")
async def totp_enable(request: web.Request) -> web.Response:
    return await _totp_switch(request, True)


@routes.post("/api/v1/auth/2fa/disable")
async def totp_disable(request: web.Request) -> web.Response:
    return await _totp_switch(request, False)


@routes.post("/api/v1/auth/verify/request")
async def verify_request(request: web.Request) -> web.Response:
    principal = await require_user(request)
    svc = services(request)
    await ratelimit.hit(svc, ratelimit.VERIFY_REQUEST_PER_USER, principal.user_id)
    expires_in = await verification.request_code(svc, principal.user_id)
    return json_response({"expiresIn": expires_in}, 202)


@routes.post("/api/v1/auth/verify/confirm")
async def verify_confirm(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await body(request, CodeIn)
    await verification.confirm_code(services(request), principal.user_id, data.code)
    return json_response({"phoneVerified": True})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
