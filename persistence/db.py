"""The asyncpg pool, with jsonb decoded by orjson so rows come back as plain dicts."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


class RawJson(str):
    """Text that is already JSON: written to json/jsonb columns as is (encoded once)."""


def _dumps(value: Any) -> str:
    if type(value) is RawJson:
        return value
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, size: int = 10) -> asyncpg.Pool:
    """Pool whose connections speak JSON natively; min size 1 keeps idle nodes cheap."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, init=_init_connection, command_timeout=30)
    assert pool is not None
    return pool
