"""Numbered SQL migrations, applied in order and recorded; safe with many starters at once.

Every starter takes the same advisory lock, so two `make run` processes against one
database apply each file exactly once and the second waits for the first.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import asyncpg

_LOCK_KEY = 0x70C40_0001  # arbitrary, constant: "pocho migrations"
_SLOW = 3600.0  # seconds: waiting for another starter and DDL may outlast the pool's query deadline
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
log = logging.getLogger(__name__)


def available() -> list[tuple[int, str, str]]:
    """(version, filename, sql) for each migration file, in order."""
    out = []
    for entry in resources.files("persistence.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY, timeout=_SLOW)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in available():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql, timeout=_SLOW)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("migration applied", extra={"migration": name})
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
