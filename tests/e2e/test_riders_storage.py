"""The rider storage pieces against real PostgreSQL and Redis: the location history buffer
(bounded, COPY, a refused batch dropped and counted, a failed flush keeping its rows) and the
available-rider index and its ordered, batched writer."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis

from adapters.geo import GeoIndex, RiderIndexWriter
from engine.rider_actor import LocationRow
from persistence import riders as riders_db
from persistence.db import create_pool
from persistence.riders import LocationHistory

LAT, LNG = 6.5244, 3.3792
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def new_rider(db: asyncpg.Connection) -> tuple[str, str]:
    """(user id, rider id) of a fresh rider profile."""
    user_id, rider_id = uuid.uuid4(), uuid.uuid4()
    await db.execute(
        "INSERT INTO users (id, phone, password_hash, role, first_name, last_name)"
        " VALUES ($1, $2, 'x', 'RIDER', 'R', 'R')",
        user_id,
        f"+23481{uuid.uuid4().int % 10**8:08d}",
    )
    await db.execute("INSERT INTO riders (id, user_id, vehicle_type) VALUES ($1, $2, 'bicycle')", rider_id, user_id)
    return str(user_id), str(rider_id)


def row(rider_id: str, i: int) -> LocationRow:
    at = T0 + timedelta(seconds=i)
    return (rider_id, None, LAT + i * 0.0001, LNG, None, None, None, at, at + timedelta(milliseconds=50))


async def stored(db: asyncpg.Connection, rider_id: str) -> list[float]:
    rows = await db.fetch(
        "SELECT lat FROM rider_locations WHERE rider_id = $1 ORDER BY recorded_at", uuid.UUID(rider_id)
    )
    return [r["lat"] for r in rows]


async def test_rider_by_user(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    user_id, rider_id = await new_rider(db)
    found = await riders_db.rider_by_user(pool, user_id)
    assert found is not None and str(found["id"]) == rider_id and found["vehicle_type"] == "bicycle"
    assert await riders_db.rider_by_user(pool, str(uuid.uuid4())) is None


async def test_history_is_bounded_dropping_the_oldest(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    _, rider_id = await new_rider(db)
    history = LocationHistory(pool, flush_ms=1000, max_rows=3, batch_rows=2)
    for i in range(5):
        history.append(row(rider_id, i))
    assert history.buffered() == 3 and history.dropped == 2
    assert await history.flush() == 3  # in batches of two
    assert history.written == 3 and history.buffered() == 0
    assert await stored(db, rider_id) == [LAT + i * 0.0001 for i in (2, 3, 4)]


async def test_a_batch_postgres_refuses_is_dropped_and_counted(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    _, rider_id = await new_rider(db)
    history = LocationHistory(pool, flush_ms=1000)
    history.append(row(str(uuid.uuid4()), 0))  # no such rider: the foreign key refuses the COPY
    assert await history.flush() == 0
    assert history.dropped == 1 and history.buffered() == 0  # not retried forever
    history.append(row(rider_id, 1))
    assert await history.flush() == 1 and await stored(db, rider_id) == [LAT + 0.0001]


async def test_a_failed_flush_keeps_its_rows(database_url: str, pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    _, rider_id = await new_rider(db)
    gone = await create_pool(database_url, size=1)
    await gone.close()
    history = LocationHistory(gone, flush_ms=1000)
    history.append(row(rider_id, 0))
    history.append(row(rider_id, 1))
    with pytest.raises(asyncpg.InterfaceError):
        await history.flush()
    assert history.buffered() == 2 and history.dropped == 0
    history.pool = pool  # PostgreSQL is back
    await history.stop()  # the final flush
    assert await stored(db, rider_id) == [LAT, LAT + 0.0001]


async def test_available_riders_nearest_first(redis: Redis) -> None:
    geo = GeoIndex(redis)
    await geo.apply_riders({"far": (LAT + 0.03, LNG), "near": (LAT + 0.01, LNG), "away": (LAT + 1.0, LNG)})
    found = await geo.available_near(LAT, LNG, 5.0, 10)
    assert [c.rider_id for c in found] == ["near", "far"]
    assert found[0].distance_km == pytest.approx(1.11, abs=0.01)
    assert [c.rider_id for c in await geo.available_near(LAT, LNG, 5.0, 1)] == ["near"]
    await geo.apply_riders({"near": None})
    assert [c.rider_id for c in await geo.available_near(LAT, LNG, 5.0, 10)] == ["far"]
    await geo.clear_riders()
    assert await geo.available_near(LAT, LNG, 500.0, 10) == []


async def test_index_writer_keeps_only_the_latest_state_per_rider(redis: Redis) -> None:
    geo = GeoIndex(redis)
    writer = RiderIndexWriter(geo, flush_seconds=3600)  # flushed by hand here
    writer.place("r1", LAT, LNG, urgent=True)
    writer.place("r2", LAT, LNG, urgent=False)
    writer.place("r2", LAT + 0.01, LNG, urgent=False)  # moved before the flush: one write
    writer.place("r3", LAT, LNG, urgent=True)
    writer.withdraw("r3")  # gone before the flush: never appears
    await writer.flush()
    assert writer.writes == 3
    found = {c.rider_id: c.distance_km for c in await geo.available_near(LAT, LNG, 5.0, 10)}
    assert set(found) == {"r1", "r2"} and found["r2"] == pytest.approx(1.11, abs=0.01)
    writer.withdraw("r1")
    await writer.flush()
    assert [c.rider_id for c in await geo.available_near(LAT, LNG, 5.0, 10)] == ["r2"]
    await writer.settled()  # nothing pending: returns at once


async def test_settled_waits_for_the_write_loop(redis: Redis) -> None:
    geo = GeoIndex(redis)
    writer = RiderIndexWriter(geo, flush_seconds=3600)  # only urgent changes and waiters wake it
    loop_task = asyncio.create_task(writer.run())
    try:
        writer.place("r1", LAT, LNG, urgent=False)  # a move alone would wait an hour...
        await writer.settled()  # ...but a waiter wakes the loop
        assert [c.rider_id for c in await geo.available_near(LAT, LNG, 5.0, 10)] == ["r1"]
        writer.withdraw("r1")
        await writer.settled()
        assert await geo.available_near(LAT, LNG, 5.0, 10) == []
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def test_a_position_redis_cannot_index_does_not_block_the_others(redis: Redis) -> None:
    """Redis GEO stops at +-85.05 degrees; one rider near a pole must not fail every write."""
    geo = GeoIndex(redis)
    writer = RiderIndexWriter(geo, flush_seconds=3600)
    writer.place("polar", 89.9, 0.0, urgent=True)
    writer.place("lagos", LAT, LNG, urgent=True)
    await writer.flush()
    assert [c.rider_id for c in await geo.available_near(LAT, LNG, 5.0, 10)] == ["lagos"]
    assert await geo.available_near(89.9, 0.0, 50.0, 10) == []
