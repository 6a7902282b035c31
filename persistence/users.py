"""Queries for users and their phone verification codes.

Style: statements rendered to SQL once at import, with pypika where it reads well and as SQL
text where pypika cannot say it (blind-index matches with ANY, the ops listing, rotation);
partial profile updates are built per call from the columns given. The PROTOCOL `user`
object is built at the edge (`pocho_rt.views.user_view`).

Personal columns are sealed at rest (`persistence.pii`): functions that write them take the
codec and seal; functions that read users rows return them opened, as plain dicts with the
same keys as the row, so callers never see a ciphertext. Lookups by phone, email or full
name match blind indexes (and, for rows from before encryption, the plaintext phone).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pypika import Order, PostgreSQLQuery, Table

from persistence.pii import PiiCodec, normalise_email, normalise_name
from persistence.sql import NOW, param, postgres

User = dict[str, Any]

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
_NEW_USER_COLUMNS = (
    "phone",
    "password_hash",
    "role",
    "first_name",
    "last_name",
    "email",
    "phone_index",
    "email_index",
    "name_index",
)
_INSERT_USER = f"""INSERT INTO users ({", ".join(_NEW_USER_COLUMNS)})
                   VALUES ({", ".join(f"${i}" for i in range(1, len(_NEW_USER_COLUMNS) + 1))})
                   ON CONFLICT DO NOTHING RETURNING {", ".join(USER_COLUMNS)}"""
# $1: the phone's digests under every index key; $2: the plaintext, for rows from before encryption.
_PHONE_MATCH = "(phone_index = ANY($1::text[]) OR (phone_index IS NULL AND phone = $2))"
_BY_PHONE = f"SELECT {', '.join(_SECRET_COLUMNS)} FROM users WHERE {_PHONE_MATCH} LIMIT 1"
_PHONE_TAKEN = f"SELECT 1 FROM users WHERE {_PHONE_MATCH} LIMIT 1"
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
    pii: PiiCodec,
    *,
    phone: str,
    password_hash: str,
    role: str,
    first_name: str,
    last_name: str,
    email: str | None,
) -> User | None:
    """Insert a user (USER_COLUMNS returned, opened); None when the phone is taken."""
    if await phone_taken(conn, pii, phone):
        return None
    sealed = pii.user_values(phone=phone, first_name=first_name, last_name=last_name, email=email)
    row = await conn.fetchrow(
        _INSERT_USER,
        sealed["phone"],
        password_hash,
        role,
        sealed["first_name"],
        sealed["last_name"],
        sealed["email"],
        sealed["phone_index"],
        sealed["email_index"],
        sealed["name_index"],
    )
    return pii.open_user(row)


# ---------------------------------------------------------------- lookups and account state


async def user_by_phone(conn: asyncpg.Connection | asyncpg.Pool, pii: PiiCodec, phone: str) -> User | None:
    """The user with this phone, including password_hash and totp_secret (never render these)."""
    return pii.open_user(await conn.fetchrow(_BY_PHONE, pii.digests("phone", phone), phone))


async def user_by_id(
    conn: asyncpg.Connection | asyncpg.Pool,
    pii: PiiCodec,
    user_id: str,
    *,
    for_update: bool = False,
) -> User | None:
    """The user with this id (secrets included), optionally locked for the transaction."""
    return pii.open_user(await conn.fetchrow(_BY_ID_FOR_UPDATE if for_update else _BY_ID, user_id))


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
        .set(users.phone_index, param(3))
        .set(users.phone_verified, True)
        .set(users.updated_at, NOW)
        .where(users.id == param(1, "uuid"))
    ).returning(*USER_COLUMNS)
)
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


async def update_profile(
    conn: asyncpg.Connection, pii: PiiCodec, user_id: str, changes: Mapping[str, Any]
) -> User | None:
    """Set the given PROFILE_COLUMNS (others are refused), sealing personal ones and keeping
    their indexes in step; returns USER_COLUMNS opened, None if the user is gone."""
    cols = [c for c in PROFILE_COLUMNS if c in changes]
    if len(cols) != len(changes):
        raise ValueError(f"not profile columns: {sorted(set(changes) - set(cols))}")
    current = await user_by_id(conn, pii, user_id, for_update=True)
    if current is None:
        return None
    values: dict[str, Any] = {c: changes[c] for c in cols}
    for col in ("first_name", "last_name", "email"):
        if col in values:
            values[col] = pii.seal(col, changes[col])
    if "first_name" in changes or "last_name" in changes:
        first = changes.get("first_name", current["first_name"])
        last = changes.get("last_name", current["last_name"])
        values["name_index"] = pii.index("name", normalise_name(first, last))
    if "email" in changes:
        values["email_index"] = pii.index(
            "email", None if changes["email"] is None else normalise_email(changes["email"])
        )
    q = PostgreSQLQuery.update(users).set(users.updated_at, NOW)
    for i, col in enumerate(values, start=2):
        q = q.set(users.field(col), param(i))
    sql = str(postgres(q.where(users.id == param(1, "uuid"))).returning(*USER_COLUMNS))
    return pii.open_user(await conn.fetchrow(sql, user_id, *values.values()))


async def set_password(conn: asyncpg.Connection, user_id: str, password_hash: str) -> None:
    await conn.execute(_SET_PASSWORD, user_id, password_hash)


async def phone_taken(conn: asyncpg.Connection | asyncpg.Pool, pii: PiiCodec, phone: str) -> bool:
    return await conn.fetchval(_PHONE_TAKEN, pii.digests("phone", phone), phone) is not None


async def set_phone(conn: asyncpg.Connection, pii: PiiCodec, user_id: str, phone: str) -> User | None:
    """Move the account to a verified new number; None when another account holds it."""
    if await phone_taken(conn, pii, phone):
        return None
    try:
        async with conn.transaction():  # a savepoint: a taken number must not abort the caller's transaction
            row = await conn.fetchrow(_SET_PHONE, user_id, pii.seal("phone", phone), pii.index("phone", phone))
    except asyncpg.UniqueViolationError:
        return None
    return pii.open_user(row)


async def set_disabled(
    conn: asyncpg.Connection, pii: PiiCodec, user_id: str, *, disabled: bool, at: datetime | None, reason: str | None
) -> User | None:
    return pii.open_user(await conn.fetchrow(_SET_DISABLED, user_id, disabled, at, reason))


# ---------------------------------------------------------------- ops listing

# Newest first, keyset (created_at, id). $1 limit, $2 role or NULL, $3 query or NULL, $4/$5
# the cursor or NULL, $6/$7/$8 the query's digests as a phone, an email and a full name.
# Personal columns are sealed, so q matches whole values only: the exact phone, email (any
# case) or full name (any case), or the user id; rows from before encryption by plaintext.
_LIST_USERS = f"""
SELECT {", ".join(USER_COLUMNS)} FROM users
 WHERE ($2::text IS NULL OR role = $2)
   AND ($3::text IS NULL
        OR phone_index = ANY($6::text[]) OR email_index = ANY($7::text[]) OR name_index = ANY($8::text[])
        OR id::text = $3
        OR (phone_index IS NULL AND (phone = $3 OR lower(email) = lower($3))))
   AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $1
"""


async def list_users(
    conn: asyncpg.Connection | asyncpg.Pool,
    pii: PiiCodec,
    *,
    role: str | None,
    q: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[User]:
    at, last_id = after if after else (None, None)
    phones = emails = names = None
    if q is not None:
        phones = pii.digests("phone", q)
        emails = pii.digests("email", normalise_email(q))
        names = pii.digests("name", " ".join(q.lower().split()))
    rows = await conn.fetch(_LIST_USERS, limit, role, q, at, last_id, phones, emails, names)
    return [u for u in (pii.open_user(r) for r in rows) if u is not None]


# ---------------------------------------------------------------- key rotation

_ROTATION_BATCH = f"""SELECT id, {", ".join(("phone", "first_name", "last_name", "email"))}, phone_index, email_index,
                             name_index, erased_at
                        FROM users WHERE ($1::uuid IS NULL OR id > $1::uuid) ORDER BY id LIMIT $2 FOR UPDATE"""
_ROTATE_ROW = """UPDATE users SET phone = $2, first_name = $3, last_name = $4, email = $5,
                                  phone_index = $6, email_index = $7, name_index = $8
                  WHERE id = $1"""


async def rotate_pii_batch(
    conn: asyncpg.Connection, pii: PiiCodec, after: uuid.UUID | None, batch: int
) -> tuple[int, int, uuid.UUID | None]:
    """Re-seal one batch of users (by id, after `after`) under the current key and index key:
    rows from before encryption, rows under an old key, rows indexed with an old index key.
    Call inside a transaction. Returns (rows seen, rows changed, last id or None when done)."""
    rows = await conn.fetch(_ROTATION_BATCH, after, batch)
    changed = 0
    for row in rows:
        if row["erased_at"] is not None:
            continue  # tombstones name nobody and stay as they are
        plain = pii.open_user(row)
        assert plain is not None
        sealed = pii.user_values(
            phone=plain["phone"], first_name=plain["first_name"], last_name=plain["last_name"], email=plain["email"]
        )
        up_to_date = all(
            pii.key_id(row[c]) == pii.current for c in ("phone", "first_name", "last_name") if row[c] is not None
        ) and (row["email"] is None or pii.key_id(row["email"]) == pii.current)
        indexed = all(row[c] == sealed[c] for c in ("phone_index", "email_index", "name_index"))
        if up_to_date and indexed:
            continue
        await conn.execute(
            _ROTATE_ROW,
            row["id"],
            *(row[c] if pii.key_id(row[c]) == pii.current else sealed[c] for c in ("phone", "first_name", "last_name")),
            row["email"] if row["email"] is None or pii.key_id(row["email"]) == pii.current else sealed["email"],
            sealed["phone_index"],
            sealed["email_index"],
            sealed["name_index"],
        )
        changed += 1
    return len(rows), changed, (rows[-1]["id"] if len(rows) == batch else None)


async def rotate_pii(pool: asyncpg.Pool, pii: PiiCodec, batch: int = 500) -> tuple[int, int]:
    """Re-seal every users row that needs it, one batch per transaction (`pocho-rt pii-rotate`).
    Safe to run while serving and to run again. Returns (rows seen, rows changed)."""
    seen = changed = 0
    after: uuid.UUID | None = None
    while True:
        async with pool.acquire() as conn, conn.transaction():
            n, c, after = await rotate_pii_batch(conn, pii, after, batch)
        seen, changed = seen + n, changed + c
        if after is None:
            return seen, changed


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
