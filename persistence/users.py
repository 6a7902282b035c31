"""Queries for users and their phone verification codes.

Style: pypika, every statement rendered to SQL once at import. Functions return asyncpg
Records; the PROTOCOL `user` object is built at the edge (`pocho_rt.views.user_view`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pypika import Order, PostgreSQLQuery, Table

from persistence.sql import NOW, param, params, postgres

users = Table("users")
codes = Table("verification_codes")

# What may be rendered (`pocho_rt.views.user_view` reads these); secrets are selected separately.
USER_COLUMNS = (
    "id",
    "phone",
    "role",
    "first_name",
    "last_name",
    "email",
    "phone_verified",
    "totp_enabled",
    "disabled",
    "created_at",
    "locale",
    "avatar_url",
    "disabled_at",
    "disabled_reason",
    "erased_at",
    "updated_at",
)
# What PATCH /api/v1/me may change.
PROFILE_COLUMNS = ("first_name", "last_name", "email", "locale", "avatar_url")
_SECRET_COLUMNS = (*USER_COLUMNS, "password_hash", "totp_secret")
_NEW_USER_COLUMNS = ("phone", "password_hash", "role", "first_name", "last_name", "email")

_INSERT_USER = str(
    postgres(PostgreSQLQuery.into(users).columns(*_NEW_USER_COLUMNS).insert(*params(len(_NEW_USER_COLUMNS))))
    .on_conflict("phone")
    .do_nothing()
    .returning(*USER_COLUMNS)
)
_BY_PHONE = str(PostgreSQLQuery.from_(users).select(*_SECRET_COLUMNS).where(users.phone == param(1)))
_by_id = PostgreSQLQuery.from_(users).select(*_SECRET_COLUMNS).where(users.id == param(1, "uuid"))
_BY_ID = str(_by_id)
_BY_ID_FOR_UPDATE = str(_by_id.for_update())
_EXISTS = str(PostgreSQLQuery.from_(users).select(1).where(users.id == param(1, "uuid")))
_SET_TOTP = str(
    PostgreSQLQuery.update(users)
    .set(users.totp_secret, param(2))
    .set(users.totp_enabled, param(3))
    .set(users.updated_at, NOW)
    .where(users.id == param(1, "uuid"))
)
_SET_PHONE_VERIFIED = str(
    PostgreSQLQuery.update(users)
    .set(users.phone_verified, True)
    .set(users.updated_at, NOW)
    .where(users.id == param(1, "uuid"))
)

_RETIRE_CODES = str(
    PostgreSQLQuery.update(codes)
    .set(codes.consumed_at, NOW)
    .where((codes.user_id == param(1, "uuid")) & codes.consumed_at.isnull())
)
_INSERT_CODE = str(
    PostgreSQLQuery.into(codes)
    .columns("user_id", "code_hash", "expires_at")
    .insert(param(1, "uuid"), param(2), NOW + param(3, "interval"))
)
_PENDING_CODE = str(
    PostgreSQLQuery.from_(codes)
    .select(codes.id, codes.code_hash, codes.attempts, (codes.expires_at <= NOW).as_("expired"))
    .where((codes.user_id == param(1, "uuid")) & codes.consumed_at.isnull())
    .orderby(codes.created_at, order=Order.desc)
    .limit(1)
    .for_update()
)
_COUNT_ATTEMPT = str(
    postgres(
        PostgreSQLQuery.update(codes).set(codes.attempts, codes.attempts + 1).where(codes.id == param(1))
    ).returning(codes.attempts)
)
_CONSUME_CODE = str(PostgreSQLQuery.update(codes).set(codes.consumed_at, NOW).where(codes.id == param(1)))


async def create_user(
    conn: asyncpg.Connection,
    *,
    phone: str,
    password_hash: str,
    role: str,
    first_name: str,
    last_name: str,
    email: str | None,
) -> asyncpg.Record | None:
    """Insert a user (USER_COLUMNS returned); None when the phone is taken."""
    return await conn.fetchrow(_INSERT_USER, phone, password_hash, role, first_name, last_name, email)


# ---------------------------------------------------------------- lookups and account state


async def user_by_phone(conn: asyncpg.Connection | asyncpg.Pool, phone: str) -> asyncpg.Record | None:
    """The user with this phone, including password_hash and totp_secret (never render these)."""
    return await conn.fetchrow(_BY_PHONE, phone)


async def user_by_id(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: str,
    *,
    for_update: bool = False,
) -> asyncpg.Record | None:
    """The user with this id (secrets included), optionally locked for the transaction."""
    return await conn.fetchrow(_BY_ID_FOR_UPDATE if for_update else _BY_ID, user_id)


async def user_exists(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> bool:
    """Whether the account still exists (a valid token may outlive its user)."""
    return await conn.fetchval(_EXISTS, user_id) is not None


async def set_totp_secret(conn: asyncpg.Connection, user_id: str, secret: str | None, *, enabled: bool) -> None:
    """Store a (pending or active) TOTP secret and whether 2FA is on."""
    await conn.execute(_SET_TOTP, user_id, secret, enabled)


async def set_phone_verified(conn: asyncpg.Connection, user_id: str) -> None:
    await conn.execute(_SET_PHONE_VERIFIED, user_id)


# ---------------------------------------------------------------- phone verification codes


async def insert_verification_code(
    conn: asyncpg.Connection,
    user_id: str,
    code_hash: str,
    ttl_seconds: int,
) -> None:
    """Store a new code (its hash) and retire the user's earlier pending ones."""
    await conn.execute(_RETIRE_CODES, user_id)
    await conn.execute(_INSERT_CODE, user_id, code_hash, timedelta(seconds=ttl_seconds))


async def pending_verification_code(conn: asyncpg.Connection, user_id: str) -> asyncpg.Record | None:
    """The user's newest unconsumed code, locked (id, code_hash, attempts, expired flag)."""
    return await conn.fetchrow(_PENDING_CODE, user_id)


async def count_code_attempt(conn: asyncpg.Connection, code_id: object) -> int:
    """Record one wrong guess; returns the attempts so far."""
    n: int = await conn.fetchval(_COUNT_ATTEMPT, code_id)
    return n


async def consume_code(conn: asyncpg.Connection, code_id: object) -> None:
    await conn.execute(_CONSUME_CODE, code_id)


# ---------------------------------------------------------------- profile, password, phone (issue 15)

_SET_PASSWORD = str(
    PostgreSQLQuery.update(users)
    .set(users.password_hash, param(2))
    .set(users.updated_at, NOW)
    .where(users.id == param(1, "uuid"))
)
_SET_PHONE = str(
    postgres(
        PostgreSQLQuery.update(users)
        .set(users.phone, param(2))
        .set(users.phone_verified, True)
        .set(users.updated_at, NOW)
        .where(users.id == param(1, "uuid"))
    ).returning(*USER_COLUMNS)
)
_PHONE_TAKEN = str(PostgreSQLQuery.from_(users).select(1).where(users.phone == param(1)))
_SET_DISABLED = str(
    postgres(
        PostgreSQLQuery.update(users)
        .set(users.disabled, param(2))
        .set(users.disabled_at, param(3))
        .set(users.disabled_reason, param(4))
        .set(users.updated_at, NOW)
        .where(users.id == param(1, "uuid"))
    ).returning(*USER_COLUMNS)
)


async def update_profile(conn: asyncpg.Connection, user_id: str, changes: Mapping[str, Any]) -> asyncpg.Record | None:
    """Set the given PROFILE_COLUMNS (others are refused); returns USER_COLUMNS, None if gone."""
    cols = [c for c in PROFILE_COLUMNS if c in changes]
    if len(cols) != len(changes):
        raise ValueError(f"not profile columns: {sorted(set(changes) - set(cols))}")
    q = PostgreSQLQuery.update(users).set(users.updated_at, NOW)
    for i, col in enumerate(cols, start=2):
        q = q.set(users.field(col), param(i))
    sql = str(postgres(q.where(users.id == param(1, "uuid"))).returning(*USER_COLUMNS))
    return await conn.fetchrow(sql, user_id, *(changes[c] for c in cols))


async def set_password(conn: asyncpg.Connection, user_id: str, password_hash: str) -> None:
    await conn.execute(_SET_PASSWORD, user_id, password_hash)


async def phone_taken(conn: asyncpg.Connection | asyncpg.Pool, phone: str) -> bool:
    return await conn.fetchval(_PHONE_TAKEN, phone) is not None


async def set_phone(conn: asyncpg.Connection, user_id: str, phone: str) -> asyncpg.Record | None:
    """Move the account to a verified new number; None when another account holds it."""
    try:
        async with conn.transaction():  # a savepoint: a taken number must not abort the caller's transaction
            return await conn.fetchrow(_SET_PHONE, user_id, phone)
    except asyncpg.UniqueViolationError:
        return None


async def set_disabled(
    conn: asyncpg.Connection, user_id: str, *, disabled: bool, at: datetime | None, reason: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(_SET_DISABLED, user_id, disabled, at, reason)


# ---------------------------------------------------------------- ops listing

# Newest first, keyset (created_at, id). $1 limit, $2 role or NULL, $3 query or NULL,
# $4/$5 the cursor or NULL. q matches the exact phone, the exact email (any case), the
# user id, or a substring of the names.
_LIST_USERS = f"""
SELECT {", ".join(USER_COLUMNS)} FROM users
 WHERE ($2::text IS NULL OR role = $2)
   AND ($3::text IS NULL
        OR phone = $3
        OR lower(email) = lower($3)
        OR id::text = $3
        OR (first_name || ' ' || last_name) ILIKE
           '%' || replace(replace(replace($3, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%')
   AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $1
"""


async def list_users(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    role: str | None,
    q: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    at, last_id = after if after else (None, None)
    rows: list[asyncpg.Record] = await conn.fetch(_LIST_USERS, limit, role, q, at, last_id)
    return rows


# ---------------------------------------------------------------- password reset and phone change codes

_RETIRE_ACCOUNT_CODES = """UPDATE account_codes SET consumed_at = now()
                            WHERE user_id = $1::uuid AND purpose = $2 AND consumed_at IS NULL"""
_INSERT_ACCOUNT_CODE = """INSERT INTO account_codes (user_id, purpose, target, code_hash, expires_at)
                          VALUES ($1::uuid, $2, $3, $4, now() + $5::interval)"""
_PENDING_ACCOUNT_CODE = """SELECT id, target, code_hash, attempts, expires_at <= now() AS expired
                             FROM account_codes
                            WHERE user_id = $1::uuid AND purpose = $2 AND consumed_at IS NULL
                            ORDER BY created_at DESC LIMIT 1 FOR UPDATE"""
_COUNT_ACCOUNT_ATTEMPT = "UPDATE account_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts"
_CONSUME_ACCOUNT_CODE = "UPDATE account_codes SET consumed_at = now() WHERE id = $1"


async def insert_account_code(
    conn: asyncpg.Connection, user_id: str, purpose: str, target: str | None, code_hash: str, ttl_seconds: int
) -> None:
    """Store a new code of `purpose` and retire the user's earlier pending ones of that purpose."""
    await conn.execute(_RETIRE_ACCOUNT_CODES, user_id, purpose)
    await conn.execute(_INSERT_ACCOUNT_CODE, user_id, purpose, target, code_hash, timedelta(seconds=ttl_seconds))


async def pending_account_code(conn: asyncpg.Connection, user_id: str, purpose: str) -> asyncpg.Record | None:
    """The newest unconsumed code of `purpose`, locked (id, target, code_hash, attempts, expired)."""
    return await conn.fetchrow(_PENDING_ACCOUNT_CODE, user_id, purpose)


async def count_account_attempt(conn: asyncpg.Connection, code_id: uuid.UUID) -> int:
    n: int = await conn.fetchval(_COUNT_ACCOUNT_ATTEMPT, code_id)
    return n


async def consume_account_code(conn: asyncpg.Connection, code_id: uuid.UUID) -> None:
    await conn.execute(_CONSUME_ACCOUNT_CODE, code_id)
