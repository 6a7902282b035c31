"""Redis geo indexes: verified vendors (with their own service radius) and open requests.

GEOSEARCH (Redis 6.2) finds candidates within the largest service radius; each vendor's
own radius, kept in a hash beside the geo set, decides whether it really covers the point.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from redis.asyncio import Redis

VENDORS = "pocho:geo:vendors"
RADIUS = "pocho:geo:vendor_km"
REQUESTS = "pocho:geo:requests"
MAX_SERVICE_KM = 50.0


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
        """Rebuild the vendor index from PostgreSQL (at start: the database is the truth)."""
        rows = await pool.fetch("SELECT id, lat, lng, km_service_area FROM vendors WHERE verified")
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
