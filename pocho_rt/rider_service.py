"""The rider service's edge: rider-session actors, the index of available riders, the location
history writer, and what the /rider namespace and the order service call to reach them.

A ping's path: `pocho_rt/sockets/rider.py` (`on_location`: schema, `engine.tracking.validate`)
-> `RiderService.location` (ask the rider actor) -> `engine.rider_actor.RiderActor` (coalescing,
jumps, then history buffer, index, customer). Nothing on that path waits for PostgreSQL or
Redis: history is COPYed every `rider_location_flush_ms` (`persistence.riders.LocationHistory`),
index moves are written once a second (`adapters.geo.RiderIndexWriter`), and `rider:location`
is encoded once and queued on the customer's sockets.

Crash window (DESIGN "Durability"): the last `rider_location_flush_ms` of history, plus every
rider's online state and position, which live in memory only: after a restart riders are
offline until their app sends `rider:online` again (a ping's ack says `online: false`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson
import socketio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from adapters.geo import GeoIndex, RiderIndexWriter
from engine.assignment import RIDER_KIND, LastLocation, RiderCandidate
from engine.errors import EngineError
from engine.rider_actor import Deps, GoOffline, GoOnline, Ping, RiderActor, RiderStats
from engine.runtime.actor import ActorSystem
from engine.runtime.metrics import REGISTRY
from engine.tracking import EtaEstimator, Fix, SpeedEta
from persistence import riders as riders_db
from persistence.riders import LocationHistory
from pocho_rt.config import Settings
from pocho_rt.publisher import order_room
from pocho_rt.sockets.server import emit_frame, event_frame
from pocho_rt.tasks import Supervisor

log = logging.getLogger("pocho.riders")

INDEX_FLUSH_SECONDS: Final = 1.0  # a moving available rider's position reaches Redis this often at most
LAST_LOCATION_TIMEOUT: Final = 1.0  # seconds `order:watch` waits for the rider actor's last position


class SocketLocationFanout:
    """Implements engine.rider_actor.LocationFanout: `rider:location` to the order's room on
    /customer, encoded once for every socket there, queued without a task per recipient."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def rider_location(self, order_id: str, payload: dict[str, Any]) -> None:
        try:
            frame = event_frame("rider:location", orjson.dumps(payload).decode(), "/customer")
            await emit_frame(self.sio, frame, order_room(order_id), "/customer")
        except Exception:  # a send problem must not fail the ping
            log.exception("rider:location delivery failed", extra={"orderId": order_id})


class RiderService:
    """Implements engine.assignment.RiderDirectory."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: Redis,
        sio: socketio.AsyncServer,
        actors: ActorSystem,
        eta: EtaEstimator | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.sio = sio
        self.actors = actors
        self.geo = GeoIndex(redis)
        self.index = RiderIndexWriter(self.geo, flush_seconds=INDEX_FLUSH_SECONDS)
        # Write-behind history: a crash loses at most one `rider_location_flush_ms` of rows.
        self.history = LocationHistory(pool, flush_ms=settings.rider_location_flush_ms)
        self.stats = RiderStats()
        deps = Deps(
            index=self.index,
            history=self.history,
            fanout=SocketLocationFanout(sio),
            tell=actors.tell,
            eta=eta or SpeedEta(),
            stats=self.stats,
            heartbeat_seconds=settings.rider_heartbeat_seconds,
        )
        actors.register(RIDER_KIND, functools.partial(RiderActor, deps=deps))
        _SERVICES.add(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, supervisor: Supervisor, *, clear_index: bool) -> None:
        """Empty the available-rider index when this node is the only one (no rider actor is
        online anywhere yet), then start the index writer and the history flusher. With other
        nodes live the index holds their riders: an entry left by a node that died is
        withdrawn when dispatch next picks it (its rider is offline on its new node).
        Heartbeats are timers of the rider actors themselves: no sweep loop."""
        if clear_index:
            await self.geo.clear_riders()
        supervisor.loop("rider-index", self.index.run)
        supervisor.loop("rider-locations", self.history.run)

    async def stop(self) -> None:
        """Flush location history (after the writer's final flush)."""
        await self.history.stop()
        self.index.release_waiters()

    # ------------------------------------------------------------------ RiderDirectory

    async def available_near(self, lat: float, lng: float, km: float, limit: int) -> list[RiderCandidate]:
        return await self.geo.available_near(lat, lng, km, limit)

    # ------------------------------------------------------------------ /rider commands

    async def rider_of(self, user_id: str) -> str | None:
        """The user's rider profile id (riders.id), or None before POST /api/v1/riders."""
        row = await riders_db.rider_by_user(self.pool, user_id)
        return None if row is None else str(row["id"])

    async def _settled(self) -> None:
        """Wait until the index holds what the actor just decided (bounded by the ask timeout)."""
        try:
            await asyncio.wait_for(self.index.settled(), self.settings.ask_timeout_seconds)
        except TimeoutError:
            raise EngineError("unavailable", "could not update the rider index, retry") from None

    async def online(self, rider_id: str, lat: float, lng: float, at: datetime) -> dict[str, Any]:
        """Available for dispatch; the ack waits until dispatch can find the rider."""
        reply: dict[str, Any] = await self.actors.ask(RIDER_KIND, rider_id, GoOnline(lat, lng, at))
        await self._settled()
        return reply

    async def offline(self, rider_id: str) -> dict[str, Any]:
        """Not available; the ack waits until dispatch can no longer find the rider."""
        reply: dict[str, Any] = await self.actors.ask(RIDER_KIND, rider_id, GoOffline())
        await self._settled()
        return reply

    async def location(self, rider_id: str, fix: Fix, received_at: datetime) -> dict[str, Any]:
        """One validated ping; answers {online, dropped?} from memory."""
        reply: dict[str, Any] = await self.actors.ask(RIDER_KIND, rider_id, Ping(fix, received_at))
        return reply

    async def last_location(self, rider_id: str, order_id: str) -> dict[str, Any] | None:
        """The `rider:location` payload of the rider carrying `order_id`, or None. A rider with
        no actor in memory has no known position: no actor is activated to say so. A busy or
        stopping actor also answers None after `LAST_LOCATION_TIMEOUT`: a watch does not wait
        on it."""
        if self.actors.local(RIDER_KIND, rider_id) and self.actors.get(RIDER_KIND, rider_id) is None:
            return None
        try:
            result: dict[str, Any] | None = await self.actors.ask(
                RIDER_KIND, rider_id, LastLocation(order_id), timeout=LAST_LOCATION_TIMEOUT
            )
        except (EngineError, KeyError):
            return None
        return result


# ---------------------------------------------------------------- metrics

_SERVICES: weakref.WeakSet[RiderService] = weakref.WeakSet()


class _RiderMetrics(Collector):
    """Rider counters read when Prometheus scrapes: the ping path only bumps plain integers."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        services = list(_SERVICES)
        received = CounterMetricFamily("pocho_rider_pings_received", "Location pings received")
        received.add_metric([], sum(s.stats.received for s in services))
        yield received
        pings = CounterMetricFamily(
            "pocho_rider_pings", "Location pings by outcome (coalesced: superseded by a newer one)", labels=["outcome"]
        )
        for outcome in ("invalid", "accepted", "coalesced", "jump", "stale"):
            pings.add_metric([outcome], sum(getattr(s.stats, outcome) for s in services))
        yield pings
        fanned = CounterMetricFamily("pocho_rider_locations_sent", "rider:location events sent to customers")
        fanned.add_metric([], sum(s.stats.fanned_out for s in services))
        yield fanned
        lapses = CounterMetricFamily("pocho_rider_heartbeat_lapses", "Riders made offline by a silent heartbeat")
        lapses.add_metric([], sum(s.stats.lapsed for s in services))
        yield lapses
        rows = CounterMetricFamily("pocho_rider_location_rows", "Location history rows by outcome", labels=["outcome"])
        rows.add_metric(["written"], sum(s.history.written for s in services))
        rows.add_metric(["dropped"], sum(s.history.dropped for s in services))
        yield rows
        failed = CounterMetricFamily(
            "pocho_rider_location_flush_failures", "Location history flushes PostgreSQL could not take (retried)"
        )
        failed.add_metric([], sum(s.history.failed_flushes for s in services))
        yield failed
        indexed = CounterMetricFamily(
            "pocho_rider_index_writes", "Available-rider index entries written to Redis (one per rider per flush)"
        )
        indexed.add_metric([], sum(s.index.writes for s in services))
        yield indexed
        yield GaugeMetricFamily(
            "pocho_rider_location_buffer",
            "Location history rows waiting for COPY",
            value=sum(s.history.buffered() for s in services),
        )
        online = 0
        for s in services:
            online += sum(1 for a in s.actors.live(RIDER_KIND) if isinstance(a, RiderActor) and a.online)
        yield GaugeMetricFamily("pocho_riders_online", "Rider actors online on this node", value=online)


REGISTRY.register(_RiderMetrics())
