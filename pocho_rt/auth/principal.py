"""Turn a bearer token into a Principal, honouring revoked sessions and disabled users.

Revocation lives in Redis so every node sees it at once: `pocho:revoked:sid:<sid>` for a
logged-out or reused refresh family, `pocho:revoked:user:<id>` (a unix time) for a user
whose tokens issued before that moment are void (password reset, account disabled).
"""

from __future__ import annotations

import hmac

from aiohttp import web
from redis.asyncio import Redis

from pocho_rt.auth.tokens import Principal, TokenError, TokenService
from pocho_rt.context import services
from pocho_rt.errors import ApiError


def _sid_key(sid: str) -> str:
    return f"pocho:revoked:sid:{sid}"


def _user_key(user_id: str) -> str:
    return f"pocho:revoked:user:{user_id}"


async def revoke_session(redis: Redis, sid: str, ttl: int) -> None:
    """Void every access token of one refresh family until they would expire anyway."""
    await redis.set(_sid_key(sid), "1", ex=max(ttl, 1))


async def revoke_user(redis: Redis, user_id: str, now: int, ttl: int) -> None:
    """Void every access token of a user issued up to now."""
    await redis.set(_user_key(user_id), str(now), ex=max(ttl, 1))


async def clear_user_revocation(redis: Redis, user_id: str) -> None:
    """Lift the user-wide cutoff (an account enabled again). Its sessions were revoked one by
    one when it was disabled, so no token of before comes back to life."""
    await redis.delete(_user_key(user_id))


async def authenticate(tokens: TokenService, redis: Redis, token: object) -> Principal:
    """Verify the JWT and its revocation state; raise TokenError when it must be refused."""
    principal = tokens.verify(token)
    sid_revoked, user_cutoff = await redis.mget(_sid_key(principal.sid), _user_key(principal.user_id))
    if sid_revoked is not None:
        raise TokenError("session revoked")
    if user_cutoff is not None and principal.iat <= int(user_cutoff):
        raise TokenError("user tokens revoked")
    return principal


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def require_user(request: web.Request, *roles: str) -> Principal:
    """The caller of an HTTP route: 401 without a valid token, 403 for another role."""
    svc = services(request)
    try:
        principal = await authenticate(svc.tokens, svc.redis, bearer(request))
    except TokenError:
        raise ApiError("unauthorized", "a valid bearer access token is required") from None
    if roles and principal.role not in roles:
        raise ApiError("forbidden", f"this route is for {', '.join(roles)} accounts")
    return principal


async def require_admin(request: web.Request) -> Principal | None:
    """Admin routes: an ADMIN bearer token, or X-Admin-Key equal to POCHO_ADMIN_KEY.

    Returns the admin principal, or None when the shared key was used. A wrong key or a
    missing token is 401; a valid token of another role is 403.
    """
    svc = services(request)
    key = request.headers.get("X-Admin-Key")
    if key is not None:
        if svc.settings.admin_key and hmac.compare_digest(key.encode(), svc.settings.admin_key.encode()):
            return None
        raise ApiError("unauthorized", "bad admin key")
    return await require_user(request, "ADMIN")
