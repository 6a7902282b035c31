"""Redis geo indexes: verified vendors (with their own service radius), open requests and
available riders.

GEOSEARCH (Redis 6.2) finds candidates within the largest service radius; each vendor's
own radius, kept in a hash beside the geo set, decides whether it really covers the point.

Riders: the rider actors decide who is available (online, holding and carrying no order);
`RiderIndexWriter` writes their decisions to the index in order, in batches, from one loop,
so a moving rider costs one GEOADD per flush, not one Redis round trip per ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from redis.asyncio import Redis

from adapters.pubsub import raise_if_cancelled
from engine.assignment import RiderCandidate

log = logging.getLogger("pocho.geo")

VENDORS = "pocho:geo:vendors"
RADIUS = "pocho:geo:vendor_km"
REQUESTS = "pocho:geo:requests"
RIDERS = "pocho:geo:riders"  # available riders only
MAX_SERVICE_KM = 50.0
GEO_MAX_LAT = 85.05112878  # Redis GEO's latitude range (Web Mercator)


class GeoIndex:
    """Implements engine.ports.VendorDirectory, and the open-request index for vendors."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def put_vendor(self, vendor_id: str, lat: float, lng: float, km: float) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.geoadd(VENDORS, (lng, lat, vendor_id))
            p.hset(RADIUS, vendor_id, str(km))
            await p.execute()

    async def remove_vendor(self, vendor_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.zrem(VENDORS, vendor_id)
            p.hdel(RADIUS, vendor_id)
            await p.execute()

    async def sync_vendors(self, pool: asyncpg.Pool) -> int:
        """Rebuild the vendor index from PostgreSQL (at start: the database is the truth): verified
        vendors whose account is not disabled."""
        rows = await pool.fetch(
            """SELECT v.id, v.lat, v.lng, v.km_service_area
                 FROM vendors v JOIN users u ON u.id = v.user_id
                WHERE v.verified AND NOT u.disabled"""
        )
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(VENDORS, RADIUS)
            for r in rows:
                p.geoadd(VENDORS, (r["lng"], r["lat"], str(r["id"])))
                p.hset(RADIUS, str(r["id"]), str(r["km_service_area"]))
            await p.execute()
        return len(rows)

    async def vendors_covering(self, lat: float, lng: float) -> tuple[str, ...]:
        found: list[Any] = await self.redis.geosearch(
            VENDORS, longitude=lng, latitude=lat, radius=MAX_SERVICE_KM, unit="km", withdist=True
        )
        if not found:
            return ()
        ids = [m[0] for m in found]
        radii = await self.redis.hmget(RADIUS, ids)
        return tuple(
            (vid.decode() if isinstance(vid, bytes) else vid)
            for (vid, dist), km in zip(found, radii, strict=True)
            if km is not None and float(dist) <= float(km)
        )

    async def put_request(self, request_id: str, lat: float, lng: float) -> None:
        await self.redis.geoadd(REQUESTS, (lng, lat, request_id))

    async def remove_request(self, request_id: str) -> None:
        await self.redis.zrem(REQUESTS, request_id)

    async def requests_near(self, lat: float, lng: float, km: float, limit: int = 200) -> list[str]:
        found: list[Any] = await self.redis.geosearch(
            REQUESTS, longitude=lng, latitude=lat, radius=km, unit="km", sort="ASC", count=limit
        )
        return [m.decode() if isinstance(m, bytes) else m for m in found]

    # ---------------------------------------------------------------- available riders

    async def apply_riders(self, changes: dict[str, tuple[float, float] | None]) -> None:
        """Several riders' latest state in one round trip: a position (available there) or
        None (not available). Redis cannot index latitudes beyond +-85.05 (nor would one
        reject the whole batch): a rider there is simply not findable."""
        places: list[Any] = []
        gone: list[str] = []
        for rider_id, pos in changes.items():
            if pos is None or not -GEO_MAX_LAT <= pos[0] <= GEO_MAX_LAT:
                gone.append(rider_id)
            else:
                places += (pos[1], pos[0], rider_id)
        async with self.redis.pipeline(transaction=False) as p:
            if places:
                p.geoadd(RIDERS, places)
            if gone:
                p.zrem(RIDERS, *gone)
            results = await p.execute(raise_on_error=False)  # connection errors still raise
        for result in results:
            if isinstance(result, Exception):  # bad data: retrying would fail the same way
                log.error("rider index command refused", extra={"error": repr(result)[:200]})

    async def clear_riders(self) -> None:
        """At start: no rider actor of this node is online yet (single node until sharding)."""
        await self.redis.delete(RIDERS)

    async def available_near(self, lat: float, lng: float, km: float, limit: int) -> list[RiderCandidate]:
        """Available riders within `km`, nearest first (none beyond Redis's latitude range)."""
        if not -GEO_MAX_LAT <= lat <= GEO_MAX_LAT:
            return []
        found: list[Any] = await self.redis.geosearch(
            RIDERS, longitude=lng, latitude=lat, radius=km, unit="km", sort="ASC", count=limit, withdist=True
        )
        return [RiderCandidate(rid.decode() if isinstance(rid, bytes) else rid, float(dist)) for rid, dist in found]


class RiderIndexWriter:
    """Implements engine.rider_actor.AvailabilityIndex: the one ordered writer of the rider index.

    Actors record each rider's latest wanted state in a dict (a later call replaces an
    earlier one, so only the newest reaches Redis); `run` writes the dict every
    `flush_seconds`, or at once when a change of availability is marked urgent. One loop
    writing in order means a rider going offline can never be re-added by an older move still
    in flight. `settled()` waits until everything recorded so far is in Redis: the
    `rider:online`/`rider:offline` acks wait for it, so an acked rider is findable (or gone).
    """

    def __init__(self, geo: GeoIndex, *, flush_seconds: float = 1.0) -> None:
        self.geo = geo
        self.flush_seconds = flush_seconds
        self._changes: dict[str, tuple[float, float] | None] = {}
        self._urgent = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._busy = False  # a flush is writing
        self.writes = 0  # rider entries written (for metrics and tests)

    def place(self, rider_id: str, lat: float, lng: float, *, urgent: bool) -> None:
        self._changes[rider_id] = (lat, lng)
        if urgent:
            self._urgent.set()

    def withdraw(self, rider_id: str) -> None:
        self._changes[rider_id] = None
        self._urgent.set()

    async def settled(self) -> None:
        """Return once everything recorded before this call is written."""
        if not self._changes and not self._busy:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._urgent.set()
        await fut

    async def flush(self) -> None:
        changes, self._changes = self._changes, {}
        waiters, self._waiters = self._waiters, []  # a waiter added meanwhile waits for the next flush
        self._busy = True
        try:
            if changes:
                await self.geo.apply_riders(changes)
                self.writes += len(changes)
        except BaseException:
            for rider_id, pos in changes.items():  # keep what nobody has superseded meanwhile
                self._changes.setdefault(rider_id, pos)
            self._waiters[:0] = waiters
            raise
        finally:
            self._busy = False
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def run(self) -> None:
        """The write loop, owned by the process supervisor; a Redis error is retried next round."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_seconds):  # not wait_for: it can swallow a cancel
                    await self._urgent.wait()
            self._urgent.clear()
            try:
                await self.flush()
            except Exception as exc:
                log.warning("rider index write failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.flush_seconds)
            raise_if_cancelled()

    def release_waiters(self) -> None:
        """Shutdown: nobody will write any more; let waiting acks go."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
