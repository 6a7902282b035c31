"""HTTP routes: password reset by SMS code (PROTOCOL "The signed-in user").

    POST /api/v1/auth/password-reset/request {phone}    202 {expiresIn} for every phone
    POST /api/v1/auth/password-reset/confirm {phone, code, newPassword}
                                                        204; every session of the account ends

The request answers the same for a phone with or without an account (only an enabled
account gets a text); it is limited per phone and per IP, and both limits count every
request, so a limit says nothing about whether the phone exists. Every failed confirmation
is the same 400 `invalid` (`pocho_rt.auth.recovery`). Codes: 6 digits, 10 minutes, single
use, the fifth wrong guess burns the code.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from pocho_rt import ratelimit
from pocho_rt.auth import recovery, rules
from pocho_rt.context import services
from pocho_rt.http.accounts import Code, Phone
from pocho_rt.http.middleware import body, json_response
from pocho_rt.validation import Schema

routes = web.RouteTableDef()
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]


class ResetRequestIn(Schema, frozen=True):
    phone: Phone


class ResetConfirmIn(Schema, frozen=True):
    phone: Phone
    code: Code
    new_password: Password


@routes.post("/api/v1/auth/password-reset/request")
async def reset_request(request: web.Request) -> web.Response:
    data = await body(request, ResetRequestIn)
    svc = services(request)
    await ratelimit.hit(svc, ratelimit.RESET_REQUEST_PER_IP, ratelimit.client_ip(request))
    await ratelimit.hit(svc, ratelimit.RESET_REQUEST_PER_PHONE, data.phone)
    await recovery.request_reset(svc, data.phone)
    return json_response({"expiresIn": rules.CODE_TTL_SECONDS}, 202)


@routes.post("/api/v1/auth/password-reset/confirm")
async def reset_confirm(request: web.Request) -> web.Response:
    data = await body(request, ResetConfirmIn)
    svc = services(request)
    await ratelimit.hit(svc, ratelimit.RESET_CONFIRM_PER_IP, ratelimit.client_ip(request))
    await recovery.confirm_reset(svc, data.phone, data.code, data.new_password)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
