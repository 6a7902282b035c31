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

