"""Shard fencing epochs (table shard_owners): the PostgreSQL half of shard ownership.

A node that takes a shard's Redis lease then takes the next epoch here; every write-behind
transaction carrying that shard's rows first runs `FENCE` with the epoch the node holds.
`FOR SHARE` makes the check and the commit one step with respect to a take: a newer owner's
`UPDATE` cannot pass a stale group that already passed the check (the take leaves that shard
for a later round, so the new owner loads state that includes the group), and a stale group
that checks after the take finds no row and aborts. One activation per key holds even when a
paused node wakes up still believing it owns the shard.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import asyncpg

from persistence.writer import Statement

# Shards whose row an old owner's open group holds (FOR SHARE) are skipped, not waited for.
_TAKE = """
WITH free AS (
    SELECT shard FROM shard_owners WHERE shard = ANY($1::integer[]) FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE shard_owners o SET node_id = $2, epoch = o.epoch + 1, acquired_at = now()
    FROM free WHERE o.shard = free.shard
    RETURNING o.shard, o.epoch
), fresh AS (
    INSERT INTO shard_owners (shard, node_id, epoch)
    SELECT s, $2, 1 FROM unnest($1::integer[]) AS s
    WHERE NOT EXISTS (SELECT 1 FROM shard_owners x WHERE x.shard = s)
    ON CONFLICT (shard) DO NOTHING
    RETURNING shard, epoch
)
SELECT shard, epoch FROM moved UNION ALL SELECT shard, epoch FROM fresh
"""

STALE_EPOCH = "PF001"  # SQLSTATE of a fenced-out write (migration 0008)

# First in its transaction, all of a group's checks in one call (`many`, migration 0010). Every
# submission's (shard, epoch) is checked, not one per shard (no `key`): a group may hold a write
# queued under an epoch the node has since lost beside one under the epoch it took back, and
# the stale one must fail its check (and be refused alone when the group is retried one by one).
FENCE = Statement(
    "fence",
    "SELECT pocho_fence($1::integer, $2::bigint)",
    order=-1,
    many="SELECT pocho_fence_all($1::integer[], $2::bigint[])",
)


async def take(pool: asyncpg.Pool | asyncpg.Connection, shard: int, node_id: str) -> int | None:
    """Record `node_id` as the shard's owner under a new, larger epoch and return it (None:
    an old owner's group holds the row, see `take_many`)."""
    return (await take_many(pool, [shard], node_id)).get(shard)


async def take_many(pool: asyncpg.Pool | asyncpg.Connection, shards: list[int], node_id: str) -> dict[int, int]:
    """`take` for several shards in one statement (a node starting takes its whole share).

    A shard whose row is locked by a group of its old owner that already passed the fence
    (a node paused mid-transaction) is left out, not waited for: its take is retried next
    round, once that group commits or PostgreSQL ends it (the pool's idle-in-transaction
    timeout), and nothing else waits on it."""
    rows = await pool.fetch(_TAKE, sorted(shards), node_id)
    return {r["shard"]: r["epoch"] for r in rows}


async def owners(pool: asyncpg.Pool | asyncpg.Connection) -> dict[int, tuple[str, int]]:
    """shard -> (node id, epoch) as last taken."""
    rows = await pool.fetch("SELECT shard, node_id, epoch FROM shard_owners")
    return {r["shard"]: (r["node_id"], r["epoch"]) for r in rows}


Row = tuple[Statement, tuple[Any, ...]]


class Fence(Protocol):
    """What a store asks of the cluster (pocho_rt/cluster.py) for each write of an actor."""

    def rows(self, kind: str, key: str) -> list[Row]:
        """The fencing row to put first in the write (EngineError `unavailable` if this node
        does not serve the actor's shard: nothing is written)."""
        ...

    def watch(self, commit: asyncio.Future[None]) -> None:
        """Look at the write's outcome: a stale epoch means another node took the shard."""
        ...


def stale_shard(exc: BaseException | None) -> int | None:
    """The shard a write was fenced out of, if `exc` (or what caused it) is that refusal."""
    if exc is not None and not isinstance(exc, asyncpg.PostgresError):
        exc = exc.__cause__
    if isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) == STALE_EPOCH:
        detail = getattr(exc, "detail", None)
        return int(detail) if detail and detail.isdigit() else None
    return None
