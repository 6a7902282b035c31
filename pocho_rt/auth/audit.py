"""Append-only audit trail of security-relevant events (table audit_log)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from pocho_rt.logs import request_id


async def audit(
    conn: asyncpg.Connection | asyncpg.Pool, action: str, *, actor_id: str | None,
    target_kind: str | None = None, target_id: str | None = None, details: dict[str, Any] | None = None,
) -> None:
    """Record `action` (e.g. 'auth.login') by a user; details must hold no secrets."""
    await conn.execute(
        """INSERT INTO audit_log (actor_id, actor_kind, action, target_kind, target_id, details, request_id)
           VALUES ($1::uuid, 'user', $2, $3, $4, $5::jsonb, $6)""",
        actor_id, action, target_kind, target_id, orjson.dumps(details or {}).decode(), request_id.get(),
    )


def mask_phone(phone: str) -> str:
    """For logs: every character but the last 4 replaced by '*'."""
    return "*" * max(len(phone) - 4, 0) + phone[-4:]
