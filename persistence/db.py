"""The asyncpg pool, with jsonb decoded by orjson so rows come back as plain dicts.

Every call through the pool has a deadline (issue 14): acquiring a connection (which may
mean opening one) waits at most `acquire_timeout`, and every statement at most
`query_timeout` (asyncpg's `command_timeout`, the default of every query, COMMIT included).
A frozen or cut PostgreSQL therefore fails a request in seconds with a `TimeoutError` or a
connection error, which the edge answers `unavailable` (`pocho_rt.errors.storage_failure`),
instead of hanging on the driver's defaults (no acquire bound, 60 s connect). Work that is
legitimately slow (migrations) passes its own `timeout=` to the statement.
"""

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


class DeadlinePool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool whose `acquire()` (and so `fetch`/`execute` on the pool) has a default
    deadline; a caller may still pass its own."""

    _acquire_timeout: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


IDLE_IN_TRANSACTION_MS = 10_000


async def create_pool(
    dsn: str,
    *,
    size: int = 10,
    acquire_timeout: float | None = 30.0,
    query_timeout: float | None = 30.0,
) -> asyncpg.Pool:
    """Pool whose connections speak JSON natively; min size 1 keeps idle nodes cheap."""
    pool = DeadlinePool(
        dsn,
        min_size=1,
        max_size=size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        # A transaction left open by a node that stopped running (SIGSTOP, a VM pause) would
        # hold its row locks, and with them the new owner's take of its shards, until the node
        # woke up: PostgreSQL ends it instead (none of ours idles mid-transaction for long).
        server_settings={"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS)},
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=query_timeout,
        timeout=acquire_timeout or 60.0,  # connecting a new connection
    )
    pool._acquire_timeout = acquire_timeout
    await pool
    return pool
