"""Rider sessions' storage: the profile lookup and the location history writer.

Location history is write-behind without group commit (DESIGN "Durability"): pings are
acknowledged from memory, rows wait in a bounded buffer and reach `rider_locations` with one
binary COPY per flush interval (`rider_location_flush_ms`). A crash loses at most the rows
of the current interval; past the bound (PostgreSQL away for a long time) the oldest rows
are dropped and counted rather than growing memory without end.

Style: pypika, statements rendered to SQL once at import; COPY through asyncpg's
`copy_records_to_table`. Functions return asyncpg Records.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import Final

import asyncpg
from pypika import PostgreSQLQuery, Table

from engine.rider_actor import LocationRow
from persistence.sql import param

log = logging.getLogger("pocho.riders")

riders = Table("riders")

_RIDER_BY_USER = str(
    PostgreSQLQuery.from_(riders).select(riders.id, riders.vehicle_type).where(riders.user_id == param(1))
)

LOCATION_COLUMNS: Final = (
    "rider_id",
    "order_id",
    "lat",
    "lng",
    "heading",
    "speed_kmh",
    "accuracy_m",
    "recorded_at",
    "received_at",
)
MAX_BUFFERED_ROWS: Final = 200_000  # ~80 s of 2,500 pings/s: memory stays bounded while PostgreSQL is away
COPY_BATCH_ROWS: Final = 20_000  # rows per COPY, so one flush after an outage is not one huge statement
_RETRY_PAUSE = 1.0  # extra wait after a failed flush (the loop's interval comes on top)

# The database is away or busy: keep the rows and try again. Anything else (a constraint
# violation, bad data) would fail the same way forever: that batch is dropped and counted.
_RETRYABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
)


async def rider_by_user(pool: asyncpg.Pool, user_id: str) -> asyncpg.Record | None:
    """(id, vehicle_type) of the user's rider profile, or None."""
    return await pool.fetchrow(_RIDER_BY_USER, uuid.UUID(user_id))


class LocationHistory:
    """Implements engine.rider_actor.LocationLog: `append` from the hot path (no I/O), `run`
    as a supervisor loop flushing every `flush_ms`, `stop` for the final flush."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_ms: float,
        max_rows: int = MAX_BUFFERED_ROWS,
        batch_rows: int = COPY_BATCH_ROWS,
    ) -> None:
        self.pool = pool
        self.flush_seconds = flush_ms / 1000.0
        self.max_rows = max_rows
        self.batch_rows = batch_rows
        self._rows: deque[LocationRow] = deque()
        self._lock = asyncio.Lock()
        self.written = 0  # rows COPY stored
        self.dropped = 0  # rows lost: buffer bound or a batch PostgreSQL refused
        self.failed_flushes = 0

    def buffered(self) -> int:
        return len(self._rows)

    def append(self, row: LocationRow) -> None:
        if len(self._rows) >= self.max_rows:
            self._rows.popleft()
            self.dropped += 1
        self._rows.append(row)

    def _take(self) -> list[LocationRow]:
        rows = self._rows
        if len(rows) <= self.batch_rows:
            self._rows = deque()
            return list(rows)
        return [rows.popleft() for _ in range(self.batch_rows)]

    def _put_back(self, batch: list[LocationRow]) -> None:
        """Return an unwritten batch to the front (it is older than what came meanwhile)."""
        self._rows.extendleft(reversed(batch))
        while len(self._rows) > self.max_rows:
            self._rows.popleft()
            self.dropped += 1

    async def flush(self) -> int:
        """COPY everything buffered; returns the rows written. Raises on a retryable failure
        (the rows stay buffered)."""
        written = 0
        async with self._lock:
            while self._rows:
                batch = self._take()
                try:
                    await self.pool.copy_records_to_table("rider_locations", records=batch, columns=LOCATION_COLUMNS)
                except (asyncio.CancelledError, *_RETRYABLE):
                    self._put_back(batch)
                    raise
                except asyncpg.PostgresError as exc:
                    self.dropped += len(batch)
                    log.error("location history batch refused", extra={"rows": len(batch), "error": repr(exc)[:300]})
                    continue
                written += len(batch)
                self.written += len(batch)
        return written

    async def run(self) -> None:
        """The flush loop, owned by the process supervisor."""
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except _RETRYABLE as exc:
                self.failed_flushes += 1
                log.warning("location history flush failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(_RETRY_PAUSE)

    async def stop(self) -> None:
        """Final flush at shutdown; what cannot be written now is lost (and logged)."""
        try:
            await self.flush()
        except _RETRYABLE as exc:
            log.error("location history lost at shutdown", extra={"rows": len(self._rows), "error": repr(exc)})
