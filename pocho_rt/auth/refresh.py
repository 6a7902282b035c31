"""Login sessions: refresh-token families, rotation with reuse detection, logout.

A session (the access token's `sid`) is a family of refresh tokens. Each refresh marks
the presented token used and issues its successor in the same family, under a row lock,
so two concurrent refreshes with one token cannot both succeed. Presenting a token that
was already rotated means it leaked (or a client raced itself): the whole family is
revoked in PostgreSQL, its access tokens are voided in Redis (`revoke_session`) and the
user's live sockets are ended.

Patchy networks lose responses, so a rotated token presented again within
`refresh_grace_seconds` by the same session (the request names the family as `sid`), while
its successor is still unused, gets that same successor pair back instead of a revocation
(`pocho_rt.auth.rules.refresh_verdict`). The successor refresh token and the access token's
`jti` are derived from the presented token with the server secret and the access token's
`iat` is the rotation time, so the pair is re-created exactly without storing any token.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from persistence import notifications, refresh_tokens
from persistence.audit import audit
from pocho_rt import ratelimit
from pocho_rt.auth import rules
from pocho_rt.auth.principal import revoke_session
from pocho_rt.auth.tokens import hash_refresh_token, new_refresh_token, successor_jti, successor_refresh_token
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id
from pocho_rt.metrics import REFRESH_REPLAYS

log = logging.getLogger("pocho.auth")


_MAX_USER_AGENT = 256


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What a session list shows about the client holding a session (never the full IP)."""

    user_agent: str | None = None
    ip_prefix: str | None = None

    @classmethod
    def of(cls, request: web.Request) -> ClientInfo:
        agent = request.headers.get("User-Agent", "").strip()[:_MAX_USER_AGENT] or None
        return cls(agent, rules.ip_prefix(ratelimit.client_ip(request)))


async def _issue(
    conn: asyncpg.Connection,
    svc: Services,
    user_id: str,
    role: str,
    family_id: str,
    client: ClientInfo,
    *,
    presented: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Insert the next token of a family and mint its access token. A rotation (`presented`)
    derives both from the presented token (module docstring); a login draws fresh ones."""
    if presented is None:
        refresh, jti = new_refresh_token(), None
    else:
        secret = svc.settings.jwt_secret
        refresh, jti = successor_refresh_token(secret, presented), successor_jti(secret, presented)
    await refresh_tokens.insert(
        conn,
        user_id=user_id,
        family_id=family_id,
        token_hash=hash_refresh_token(refresh),
        ttl_seconds=svc.settings.jwt_refresh_ttl,
        issued_at=at,
        user_agent=client.user_agent,
        ip_prefix=client.ip_prefix,
    )
    issued_at = int(at.timestamp()) if at is not None else None
    access, expires_in = svc.tokens.issue(user_id, role, family_id, issued_at=issued_at, jti=jti)
    return {"accessToken": access, "refreshToken": refresh, "expiresIn": expires_in}


def _replay(svc: Services, raw: str, user_id: str, role: str, family_id: str, rotated_at: datetime) -> dict[str, Any]:
    """The pair a rotation of `raw` at `rotated_at` issued, re-created (nothing is written)."""
    secret = svc.settings.jwt_secret
    iat = int(rotated_at.timestamp())
    access, ttl = svc.tokens.issue(user_id, role, family_id, issued_at=iat, jti=successor_jti(secret, raw))
    left = max(iat + ttl - int(time.time()), 0)
    return {"accessToken": access, "refreshToken": successor_refresh_token(secret, raw), "expiresIn": left}


async def start_session(
    conn: asyncpg.Connection, svc: Services, user_id: str, role: str, client: ClientInfo | None = None
) -> dict[str, Any]:
    """A new family (login or registration); returns PROTOCOL `tokens`. Call inside a transaction."""
    return await _issue(conn, svc, user_id, role, str(uuid.uuid4()), client or ClientInfo())


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


async def rotate(
    svc: Services, raw: str, *, sid: str | None = None, client: ClientInfo | None = None
) -> dict[str, Any]:
    """Exchange a live refresh token for new tokens; 401 for anything else (reuse revokes,
    but a retry within the grace naming the same `sid` gets the same successor pair)."""
    token_hash = hash_refresh_token(raw)
    out = _Outcome()
    now = datetime.now(UTC)
    async with svc.pool.acquire() as conn, conn.transaction():
        row = await refresh_tokens.lock_by_hash(conn, token_hash)
        presented = None
        if row is not None:
            successor_live = row["used"] and await refresh_tokens.is_live(
                conn, hash_refresh_token(successor_refresh_token(svc.settings.jwt_secret, raw))
            )
            presented = rules.PresentedToken(
                revoked=row["revoked"],
                expired=row["expired"],
                disabled=row["disabled"],
                used_at=row["used_at"],
                family_id=row["family_id"],
                successor_live=bool(successor_live),
            )
        verdict = rules.refresh_verdict(
            presented, now=now, grace_seconds=svc.settings.refresh_grace_seconds, claimed_sid=sid
        )
        if verdict is rules.Refresh.DEAD or row is None:
            out.error = _dead()
        elif verdict is rules.Refresh.REPLAY:
            REFRESH_REPLAYS.inc()
            out.tokens = _replay(svc, raw, row["user_id"], row["role"], row["family_id"], row["used_at"])
        elif verdict is rules.Refresh.REVOKE:
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
        elif verdict is rules.Refresh.DISABLED:
            out.error = ApiError("forbidden", "this account is disabled")
        else:
            await refresh_tokens.mark_used(conn, row["id"], now)
            out.tokens = await _issue(
                conn, svc, row["user_id"], row["role"], row["family_id"], client or ClientInfo(), presented=raw, at=now
            )
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
        await notifications.delete_session_devices(conn, str(row["family_id"]))  # its push tokens too
        await audit(
            conn,
            "auth.logout",
            actor_id=row["user_id"],
            target_kind="session",
            target_id=row["family_id"],
            request_id=request_id.get(),
        )
    await revoke_family_live(svc, row["family_id"], f"sid:{row['family_id']}", "logout")


async def end_families(svc: Services, families: list[str], reason: str) -> None:
    """After commit of their revocation: void the families' access tokens in Redis and end
    each one's sockets on every node (`session:revoked` {reason})."""
    for family_id in families:
        await revoke_family_live(svc, family_id, f"sid:{family_id}", reason)
