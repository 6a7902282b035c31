"""Queries for users (pypika-built)."""

from __future__ import annotations

from typing import Any

import asyncpg
from pypika import Parameter, PostgreSQLQuery, Table

from engine.clock import iso

users = Table("users")
USER_COLUMNS = ("id", "phone", "role", "first_name", "last_name", "email", "phone_verified",
                "totp_enabled", "disabled", "created_at")


async def create_user(
    conn: asyncpg.Connection, *, phone: str, password_hash: str, role: str,
    first_name: str, last_name: str, email: str | None,
) -> asyncpg.Record | None:
    """Insert a user; None when the phone is taken."""
    q = (
        PostgreSQLQuery.into(users)
        .columns("phone", "password_hash", "role", "first_name", "last_name", "email")
        .insert(*(Parameter(f"${i}") for i in range(1, 7)))
        .on_conflict("phone").do_nothing()
        .returning(*USER_COLUMNS)
    )
    return await conn.fetchrow(str(q), phone, password_hash, role, first_name, last_name, email)


def user_view(row: Any) -> dict[str, Any]:
    """PROTOCOL `user` object (no secrets)."""
    return {
        "id": str(row["id"]),
        "phone": row["phone"],
        "role": row["role"],
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "email": row["email"],
        "phoneVerified": row["phone_verified"],
        "totpEnabled": row["totp_enabled"],
        "createdAt": iso(row["created_at"]),
    }



# ---------------------------------------------------------------- lookups and account state

_SECRET_COLUMNS = (*USER_COLUMNS, "password_hash", "totp_secret")


async def user_by_phone(conn: asyncpg.Connection | asyncpg.Pool, phone: str) -> asyncpg.Record | None:
    """The user with this phone, including password_hash and totp_secret (never render these)."""
    q = PostgreSQLQuery.from_(users).select(*_SECRET_COLUMNS).where(users.phone == Parameter("$1"))
    return await conn.fetchrow(str(q), phone)


async def user_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: str, *, for_update: bool = False,
) -> asyncpg.Record | None:
    """The user with this id (secrets included), optionally locked for the transaction."""
    q = PostgreSQLQuery.from_(users).select(*_SECRET_COLUMNS).where(users.id == Parameter("$1::uuid"))
    if for_update:
        q = q.for_update()
    return await conn.fetchrow(str(q), user_id)


async def set_totp_secret(conn: asyncpg.Connection, user_id: str, secret: str | None, *, enabled: bool) -> None:
    """Store a (pending or active) TOTP secret and whether 2FA is on."""
    await conn.execute(
        "UPDATE users SET totp_secret = $2, totp_enabled = $3, updated_at = now() WHERE id = $1::uuid",
        user_id, secret, enabled,
    )


async def set_phone_verified(conn: asyncpg.Connection, user_id: str) -> None:
    await conn.execute(
        "UPDATE users SET phone_verified = true, updated_at = now() WHERE id = $1::uuid", user_id)


# ---------------------------------------------------------------- phone verification codes


async def insert_verification_code(
    conn: asyncpg.Connection, user_id: str, code_hash: str, ttl_seconds: int,
) -> None:
    """Store a new code (its hash) and retire the user's earlier pending ones."""
    await conn.execute(
        "UPDATE verification_codes SET consumed_at = now() WHERE user_id = $1::uuid AND consumed_at IS NULL",
        user_id,
    )
    await conn.execute(
        """INSERT INTO verification_codes (user_id, code_hash, expires_at)
           VALUES ($1::uuid, $2, now() + make_interval(secs => $3))""",
        user_id, code_hash, float(ttl_seconds),
    )


async def pending_verification_code(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    """The user's newest unconsumed code, locked (id, code_hash, attempts, expired flag)."""
    return await conn.fetchrow(
        """SELECT id, code_hash, attempts, expires_at <= now() AS expired
             FROM verification_codes
            WHERE user_id = $1::uuid AND consumed_at IS NULL
            ORDER BY created_at DESC
            LIMIT 1
              FOR UPDATE""",
        user_id,
    )


async def count_code_attempt(conn: asyncpg.Connection, code_id: object) -> int:
    """Record one wrong guess; returns the attempts so far."""
    n: int = await conn.fetchval(
        "UPDATE verification_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts", code_id)
    return n


async def consume_code(conn: asyncpg.Connection, code_id: object) -> None:
    await conn.execute("UPDATE verification_codes SET consumed_at = now() WHERE id = $1", code_id)
