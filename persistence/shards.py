"""Shard fencing epochs (table shard_owners): the PostgreSQL half of shard ownership.

A node that takes a shard's Redis lease then takes the next epoch here; every write-behind
transaction carrying that shard's rows first runs `FENCE` with the epoch the node holds.
`FOR SHARE` makes the check and the commit one step with respect to a take: a newer owner's
`UPDATE` waits until a stale group that already passed the check has committed (so the new
owner loads state that includes it), and a stale group that checks after the take finds no
row and aborts. One activation per key holds even when a paused node wakes up still
believing it owns the shard.
"""

from __future__ import annotations

import asyncpg

from persistence.writer import Statement

_TAKE = """
INSERT INTO shard_owners (shard, node_id, epoch) VALUES ($1, $2, 1)
ON CONFLICT (shard) DO UPDATE
    SET node_id = EXCLUDED.node_id, epoch = shard_owners.epoch + 1, acquired_at = now()
RETURNING epoch
"""

STALE_EPOCH = "PF001"  # SQLSTATE of a fenced-out write (migration 0008)

# First in its transaction; one check per shard per group (key: the shard).
FENCE = Statement("fence", "SELECT pocho_fence($1::integer, $2::bigint)", order=-1, key=0)


async def take(pool: asyncpg.Pool | asyncpg.Connection, shard: int, node_id: str) -> int:
    """Record `node_id` as the shard's owner under a new, larger epoch and return it."""
    epoch: int = await pool.fetchval(_TAKE, shard, node_id)
    return epoch


async def owners(pool: asyncpg.Pool | asyncpg.Connection) -> dict[int, tuple[str, int]]:
    """shard -> (node id, epoch) as last taken."""
    rows = await pool.fetch("SELECT shard, node_id, epoch FROM shard_owners")
    return {r["shard"]: (r["node_id"], r["epoch"]) for r in rows}
