"""Queries for refresh tokens: one row per issued token, grouped in families (one login).

Only the sha256 of a token is stored. `family_id` is the access token's `sid`. A token is
live while `used_at`, `revoked_at` are NULL and `expires_at` is ahead; rotating marks it
used and inserts its successor in the same family.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

# The most sessions GET /api/v1/me/sessions lists (newest activity first).
MAX_LISTED_SESSIONS = 100


async def insert(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    family_id: str,
    token_hash: str,
    ttl_seconds: int,
    issued_at: datetime | None = None,
    user_agent: str | None = None,
    ip_prefix: str | None = None,
) -> None:
    """Store a token; `issued_at` (default the statement's now()) is its created_at, and
    expires_at is that plus the lifetime, so the two never disagree."""
    await conn.execute(
        """INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at, user_agent, ip_prefix)
           SELECT $1::uuid, $2::uuid, $3, at, at + make_interval(secs => $4), $6, $7
             FROM (SELECT coalesce($5::timestamptz, now()) AS at) t""",
        user_id,
        family_id,
        token_hash,
        float(ttl_seconds),
        issued_at,
        user_agent,
        ip_prefix,
    )


async def lock_by_hash(conn: asyncpg.Connection, token_hash: str) -> asyncpg.Record | None:
    """The token's row locked FOR UPDATE (call inside a transaction), with its user's role and state.

    Columns: id, user_id, family_id, used, used_at, revoked, expired, role, disabled.
    """
    return await conn.fetchrow(
        """SELECT t.id, t.user_id::text AS user_id, t.family_id::text AS family_id,
                  t.used_at IS NOT NULL AS used, t.used_at, t.revoked_at IS NOT NULL AS revoked,
                  t.expires_at <= now() AS expired, u.role, u.disabled
             FROM refresh_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = $1
              FOR UPDATE OF t""",
        token_hash,
    )


async def mark_used(conn: asyncpg.Connection, token_id: object, at: datetime) -> None:
    await conn.execute("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1", token_id, at)


async def is_live(conn: asyncpg.Connection, token_hash: str) -> bool:
    """Whether a token exists unused, unrevoked and unexpired (the refresh grace asks this of
    a rotated token's successor)."""
    live: bool | None = await conn.fetchval(
        """SELECT true FROM refresh_tokens
            WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()""",
        token_hash,
    )
    return bool(live)


async def revoke_user_families(conn: asyncpg.Connection, user_id: str, *, keep_family: str | None = None) -> list[str]:
    """Revoke every live family of a user (but `keep_family`); returns the families revoked."""
    rows = await conn.fetch(
        """UPDATE refresh_tokens SET revoked_at = now()
            WHERE user_id = $1::uuid AND revoked_at IS NULL
              AND ($2::uuid IS NULL OR family_id <> $2::uuid)
        RETURNING family_id::text AS family_id""",
        user_id,
        keep_family,
    )
    return sorted({r["family_id"] for r in rows})


async def revoke_user_family(conn: asyncpg.Connection, user_id: str, family_id: str) -> bool:
    """Revoke one family if it belongs to the user and is live; False otherwise."""
    status: str = await conn.execute(
        """UPDATE refresh_tokens SET revoked_at = now()
            WHERE user_id = $1::uuid AND family_id = $2::uuid AND revoked_at IS NULL""",
        user_id,
        family_id,
    )
    return int(status.rsplit(" ", 1)[-1]) > 0


async def live_sessions(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> list[asyncpg.Record]:
    """The user's live families: (family_id, created_at of the login, last_used_at = the
    latest rotation, user_agent and ip_prefix of the latest token), newest activity first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT t.family_id::text AS family_id, t.created_at AS last_used_at, t.user_agent, t.ip_prefix,
                  (SELECT min(f.created_at) FROM refresh_tokens f WHERE f.family_id = t.family_id) AS created_at
             FROM refresh_tokens t
            WHERE t.user_id = $1::uuid AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now()
            ORDER BY t.created_at DESC
            LIMIT $2""",
        user_id,
        MAX_LISTED_SESSIONS,
    )
    return rows


async def all_families(conn: asyncpg.Connection | asyncpg.Pool, user_id: str, limit: int) -> list[asyncpg.Record]:
    """Every family the user ever had, live or not (the data export)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT family_id::text AS family_id, min(created_at) AS created_at, max(created_at) AS last_used_at,
                  (array_agg(user_agent ORDER BY created_at DESC))[1] AS user_agent,
                  (array_agg(ip_prefix ORDER BY created_at DESC))[1] AS ip_prefix,
                  max(revoked_at) AS revoked_at, count(*) AS tokens
             FROM refresh_tokens WHERE user_id = $1::uuid
            GROUP BY family_id ORDER BY max(created_at) DESC LIMIT $2""",
        user_id,
        limit,
    )
    return rows


async def revoke_family(conn: asyncpg.Connection | asyncpg.Pool, family_id: str) -> int:
    """Revoke every token of a family not revoked yet; returns how many rows changed."""
    status: str = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1::uuid AND revoked_at IS NULL",
        family_id,
    )
    return int(status.rsplit(" ", 1)[-1])


async def family_of(conn: asyncpg.Connection | asyncpg.Pool, token_hash: str) -> asyncpg.Record | None:
    """(user_id, family_id) of a token in any state, or None."""
    return await conn.fetchrow(
        "SELECT user_id::text AS user_id, family_id::text AS family_id FROM refresh_tokens WHERE token_hash = $1",
        token_hash,
    )
