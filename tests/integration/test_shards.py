"""Shard fencing epochs against a real PostgreSQL (persistence/shards.py, migration 0008): epochs
only grow, a stale epoch aborts its whole transaction, and a take never passes a stale group
that already passed the check: it leaves that shard for a later round (not holding up the
others), so a new owner always loads what the old one committed."""

from __future__ import annotations

import asyncpg
import pytest

from persistence import shards


async def test_epochs_only_grow_and_name_the_last_taker(db: asyncpg.Connection) -> None:
    assert await shards.take(db, 7, "n1") == 1
    assert await shards.take(db, 7, "n2") == 2
    assert await shards.take(db, 7, "n1") == 3
    assert await shards.take(db, 8, "n2") == 1
    assert await shards.owners(db) == {7: ("n1", 3), 8: ("n2", 1)}


async def test_a_stale_epoch_aborts_the_transaction_and_writes_nothing(db: asyncpg.Connection) -> None:
    await db.execute("CREATE TEMP TABLE t (v int)")
    epoch = await shards.take(db, 3, "n1")
    async with db.transaction():
        await db.execute(shards.FENCE.sql, 3, epoch)  # current: passes
        await db.execute("INSERT INTO t VALUES (1)")
    await shards.take(db, 3, "n2")  # taken over
    with pytest.raises(asyncpg.PostgresError) as caught:
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (2)")
            await db.execute(shards.FENCE.sql, 3, epoch)
    assert caught.value.sqlstate == shards.STALE_EPOCH
    assert caught.value.detail == "3"
    assert [r["v"] for r in await db.fetch("SELECT v FROM t")] == [1]
    with pytest.raises(asyncpg.PostgresError):  # a shard nobody took is nobody's to write
        await db.execute(shards.FENCE.sql, 99, 1)


async def test_one_call_fences_every_shard_of_a_group(db: asyncpg.Connection) -> None:
    """`FENCE.many` (migration 0010), what the writer runs once per group: the same check as one
    `FENCE` per shard; the first stale shard aborts the transaction and is named."""
    assert shards.FENCE.many is not None
    await db.execute("CREATE TEMP TABLE t (v int)")
    epochs = {s: await shards.take(db, s, "n1") for s in (11, 12, 13)}
    async with db.transaction():
        await db.execute(shards.FENCE.many, [11, 12, 13], [epochs[11], epochs[12], epochs[13]])
        await db.execute("INSERT INTO t VALUES (1)")
    await db.execute(shards.FENCE.many, [], [])  # nothing to fence: passes
    await shards.take(db, 12, "n2")  # taken over
    with pytest.raises(asyncpg.PostgresError) as caught:
        async with db.transaction():
            await db.execute("INSERT INTO t VALUES (2)")
            await db.execute(shards.FENCE.many, [11, 12, 13], [epochs[11], epochs[12], epochs[13]])
    assert caught.value.sqlstate == shards.STALE_EPOCH
    assert caught.value.detail == "12"
    assert [r["v"] for r in await db.fetch("SELECT v FROM t")] == [1]
    with pytest.raises(asyncpg.PostgresError) as caught:  # a shard nobody took is nobody's to write
        await db.execute(shards.FENCE.many, [11, 99], [epochs[11], 1])
    assert caught.value.sqlstate == shards.STALE_EPOCH and caught.value.detail == "99"
    with pytest.raises(asyncpg.PostgresError):  # arrays of different lengths are a bug, not a pass
        await db.execute(shards.FENCE.many, [11, 13], [epochs[11]])


async def test_a_take_leaves_a_shard_whose_stale_group_already_passed_the_check(
    database_url: str, db: asyncpg.Connection
) -> None:
    await db.execute("CREATE TABLE fence_probe (v int)")
    try:
        epoch = await shards.take(db, 5, "old")
        assert epoch is not None and await shards.take(db, 6, "old") == 1
        old = await asyncpg.connect(database_url)
        new = await asyncpg.connect(database_url)
        try:
            tx = old.transaction()
            await tx.start()
            await old.execute(shards.FENCE.sql, 5, epoch)  # the old owner's group passed the check
            await old.execute("INSERT INTO fence_probe VALUES (1)")
            # The new owner takes what it can: shard 6 now, shard 5 not while the group is open.
            assert await shards.take_many(new, [5, 6], "new") == {6: 2}
            assert await db.fetchval("SELECT epoch FROM shard_owners WHERE shard = 5") == epoch
            await tx.commit()
            assert await shards.take(new, 5, "new") == epoch + 1
            # The new owner now sees the old owner's committed row.
            assert await new.fetchval("SELECT count(*) FROM fence_probe") == 1
        finally:
            await old.close()
            await new.close()
    finally:
        await db.execute("DROP TABLE fence_probe")
