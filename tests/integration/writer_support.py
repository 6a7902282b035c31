"""Helpers of the writer tests (test_writer.py, test_writer_groups.py): the writer's loop in a
task, scratch tables and functions, a two-column insert statement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from persistence.writer import Statement, Writer


@contextlib.asynccontextmanager
async def running(writer: Writer) -> AsyncIterator[Writer]:
    """The writer's loop in a task of its own (in a server, the supervisor owns it), stopped on exit."""
    loop = asyncio.ensure_future(writer.run())
    try:
        yield writer
    finally:
        await writer.stop(timeout=1.0)
        # stop() lets the loop end by itself; the wait only guards the cleanup.
        done, _ = await asyncio.wait([loop], timeout=5)
        if not done:
            loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


@contextlib.asynccontextmanager
async def scratch(db: asyncpg.Connection, ddl: str, *tables: str) -> AsyncIterator[None]:
    drop = "DROP TABLE IF EXISTS " + ", ".join(tables) + " CASCADE"
    await db.execute(drop)
    await db.execute(ddl)
    try:
        yield
    finally:
        await db.execute(drop)


@contextlib.asynccontextmanager
async def dropping(db: asyncpg.Connection, function: str) -> AsyncIterator[None]:
    """A scratch function the test creates (visible to the writer's connections): dropped on exit."""
    try:
        yield
    finally:
        await db.execute(f"DROP FUNCTION IF EXISTS {function}")


def insert(table: str, *, order: int = 1, key: int | None = None) -> Statement:
    return Statement(f"ins_{table}", f"INSERT INTO {table} (id, v) VALUES ($1, $2)", order=order, key=key)
