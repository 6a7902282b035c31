"""Queries for refresh tokens: one row per issued token, grouped in families (one login).

Only the sha256 of a token is stored. `family_id` is the access token's `sid`. A token is
live while `used_at`, `revoked_at` are NULL and `expires_at` is ahead; rotating marks it
used and inserts its successor in the same family.
"""

from __future__ import annotations

import asyncpg


async def insert(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    family_id: str,
    token_hash: str,
    ttl_seconds: int,
) -> None:
    await conn.execute(
        """INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
           VALUES ($1::uuid, $2::uuid, $3, now() + make_interval(secs => $4))""",
        user_id,
        family_id,
        token_hash,
        float(ttl_seconds),
    )


async def lock_by_hash(conn: asyncpg.Connection, token_hash: str) -> asyncpg.Record | None:
    """The token's row locked FOR UPDATE (call inside a transaction), with its user's role and state.

    Columns: id, user_id, family_id, used, revoked, expired, role, disabled.
    """
    return await conn.fetchrow(
        """SELECT t.id, t.user_id::text AS user_id, t.family_id::text AS family_id,
                  t.used_at IS NOT NULL AS used, t.revoked_at IS NOT NULL AS revoked,
                  t.expires_at <= now() AS expired, u.role, u.disabled
             FROM refresh_tokens t JOIN users u ON u.id = t.user_id
            WHERE t.token_hash = $1
              FOR UPDATE OF t""",
        token_hash,
    )


async def mark_used(conn: asyncpg.Connection, token_id: object) -> None:
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", token_id)


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
