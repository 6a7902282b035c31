"""The rider service's edge: rider-session actors, the geo index of available riders, the
location history writer. (Issue 7, being built: the rider helper fills it in.)"""

from __future__ import annotations

import asyncpg
import socketio
from redis.asyncio import Redis

from engine.assignment import RiderCandidate
from engine.runtime.actor import ActorSystem
from pocho_rt.config import Settings
from pocho_rt.tasks import Supervisor


class RiderService:
    """Implements engine.assignment.RiderDirectory."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, redis: Redis, sio: socketio.AsyncServer, actors: ActorSystem
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.sio = sio
        self.actors = actors

    async def start(self, supervisor: Supervisor) -> None:
        """Register the rider loops (location history writer, heartbeat sweep) with the supervisor."""

    async def stop(self) -> None:
        """Flush location history (after the writer's final flush)."""

    async def available_near(self, lat: float, lng: float, km: float, limit: int) -> list[RiderCandidate]:
        return []
