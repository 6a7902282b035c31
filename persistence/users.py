"""Queries for users and their phone verification codes.

Style: pypika, every statement rendered to SQL once at import. Functions return asyncpg
Records; the PROTOCOL `user` object is built at the edge (`pocho_rt.views.user_view`).
"""

from __future__ import annotations

from datetime import timedelta

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
)
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
