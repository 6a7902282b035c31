"""The append-only audit trail (table audit_log): the one writer of it.

Security-relevant and admin actions both land here, so there is one statement and one
signature. Callers pass the HTTP request id themselves (persistence does not import the
server's logging context). Details must hold no secrets. The statement is pypika, built
once at import.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from pypika import PostgreSQLQuery, Table

from persistence.db import RawJson
from persistence.sql import params

audit_log = Table("audit_log")
_COLUMNS = ("actor_id", "actor_kind", "action", "target_kind", "target_id", "details", "request_id")
_INSERT = str(PostgreSQLQuery.into(audit_log).columns(*_COLUMNS).insert(*params(len(_COLUMNS))))


async def audit(
    conn: asyncpg.Connection | asyncpg.Pool,
    action: str,
    *,
    actor_id: str | None,
    request_id: str | None,
    actor_kind: str = "user",
    target_kind: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record `action` (e.g. 'auth.login', 'vendor.verify') by `actor_id` of `actor_kind`
    ('user', 'admin', or 'admin_key' with no actor id). Call inside the transaction of the
    change it records, so the trail holds exactly what committed."""
    await conn.execute(
        _INSERT,
        actor_id,
        actor_kind,
        action,
        target_kind,
        target_id,
        RawJson(orjson.dumps(details or {}).decode()),
        request_id,
    )
