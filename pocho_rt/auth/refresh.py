"""Login sessions: refresh-token families, rotation with reuse detection, logout.

A session (the access token's `sid`) is a family of refresh tokens. Each refresh marks
the presented token used and issues its successor in the same family, under a row lock,
so two concurrent refreshes with one token cannot both succeed. Presenting a token that
was already rotated means it leaked (or a client raced itself): the whole family is
revoked in PostgreSQL, its access tokens are voided in Redis (`revoke_session`) and the
user's live sockets are ended.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from persistence import refresh_tokens
from persistence.audit import audit
from pocho_rt.auth.principal import revoke_session
from pocho_rt.auth.tokens import hash_refresh_token, new_refresh_token
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id

log = logging.getLogger("pocho.auth")


async def _issue(conn: asyncpg.Connection, svc: Services, user_id: str, role: str, family_id: str) -> dict[str, Any]:
    refresh = new_refresh_token()
    await refresh_tokens.insert(
        conn,
        user_id=user_id,
        family_id=family_id,
        token_hash=hash_refresh_token(refresh),
        ttl_seconds=svc.settings.jwt_refresh_ttl,
    )
    access, expires_in = svc.tokens.issue(user_id, role, family_id)
    return {"accessToken": access, "refreshToken": refresh, "expiresIn": expires_in}


async def start_session(conn: asyncpg.Connection, svc: Services, user_id: str, role: str) -> dict[str, Any]:
    """A new family (login or registration); returns PROTOCOL `tokens`. Call inside a transaction."""
    return await _issue(conn, svc, user_id, role, str(uuid.uuid4()))


@dataclass(slots=True)
class _Outcome:
    tokens: dict[str, Any] | None = None
    error: ApiError | None = None
    reused: tuple[str, str] | None = None  # (user_id, family_id) to revoke live


def _dead() -> ApiError:
    return ApiError("unauthorized", "refresh token is invalid, expired or revoked")


async def revoke_family_live(svc: Services, family_id: str, room: str, reason: str) -> None:
    """Void the family's access tokens in Redis and end the sockets of `room`."""
    await revoke_session(svc.redis, family_id, svc.settings.jwt_access_ttl)
    await svc.sessions.end(room, reason)


async def rotate(svc: Services, raw: str) -> dict[str, Any]:
    """Exchange a live refresh token for new tokens; 401 for anything else (reuse revokes)."""
    token_hash = hash_refresh_token(raw)
    out = _Outcome()
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await refresh_tokens.lock_by_hash(conn, token_hash)
        if row is None or row["revoked"] or row["expired"]:
            out.error = _dead()
        elif row["used"]:
            await refresh_tokens.revoke_family(conn, row["family_id"])
            await audit(
                conn,
                "auth.refresh_reuse",
                actor_id=row["user_id"],
                target_kind="session",
                target_id=row["family_id"],
                request_id=request_id.get(),
            )
            out.error, out.reused = _dead(), (row["user_id"], row["family_id"])
        elif row["disabled"]:
            out.error = ApiError("forbidden", "this account is disabled")
        else:
            await refresh_tokens.mark_used(conn, row["id"])
            out.tokens = await _issue(conn, svc, row["user_id"], row["role"], row["family_id"])
    if out.reused:
        user_id, family_id = out.reused
        log.warning("refresh token reuse: session revoked", extra={"userId": user_id, "sid": family_id})
        await revoke_family_live(svc, family_id, f"user:{user_id}", "refresh_reuse")
    if out.error:
        raise out.error
    assert out.tokens is not None
    return out.tokens


async def logout(svc: Services, raw: str) -> None:
    """Revoke the token's whole family (idempotent; an unknown token changes nothing)."""
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await refresh_tokens.family_of(conn, hash_refresh_token(raw))
        if row is None:
            return
        await refresh_tokens.revoke_family(conn, row["family_id"])
        await audit(
            conn,
            "auth.logout",
            actor_id=row["user_id"],
            target_kind="session",
            target_id=row["family_id"],
            request_id=request_id.get(),
        )
    await revoke_family_live(svc, row["family_id"], f"sid:{row['family_id']}", "logout")
