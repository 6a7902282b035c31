"""The actor that owns one rider's session: presence, position, offers and the order it carries.

Kind `engine.assignment.RIDER_KIND`, keyed by the rider profile id (riders.id). Its state is
memory only: location pings are the one exception to group commit (DESIGN "Durability"), so
a ping never waits for the database. An accepted fix goes to the location history buffer
(appended to `rider_locations` in batches; a crash may lose the last flush interval), to the
index of available riders (batched, so a moving rider costs Redis at most one write per
flush), and, while the rider carries an order, to that order's customer as `rider:location`.

Presence: `GoOnline` makes the rider available; no ping for `heartbeat_seconds` makes it
offline (a *lapse*) without anyone saying so, and its pings coming back make it available
again. `GoOffline` is the rider's own choice: pings after it are recorded but make nothing
available. Available means online, holding no order and carrying none: exactly the riders in
the index. An assignment starts with `Reserve` (asked by the order service, before the order
actor accepts) and becomes `Carrying` once committed; `Release` ends either. A rider offered
an order who goes offline (or lapses) tells that order `RiderUnavailable`, so dispatch moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from engine import tracking
from engine.assignment import (
    ORDER_KIND,
    RIDER_KIND,
    AssignmentOffered,
    AssignmentWithdrawn,
    Carrying,
    LastLocation,
    Release,
    Reserve,
    RiderUnavailable,
)
from engine.clock import utcnow
from engine.errors import EngineError
from engine.limits import PING_MIN_INTERVAL_SECONDS, RIDER_MAX_OFFERS
from engine.runtime.actor import Actor

log = logging.getLogger("pocho.riders")


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class GoOnline:
    """`rider:online`: available for dispatch at this position."""

    lat: float
    lng: float
    at: datetime  # server time of the command (the position has no device time)


@dataclass(frozen=True, slots=True)
class GoOffline:
    """`rider:offline`: not available until the next `GoOnline`."""


@dataclass(frozen=True, slots=True)
class Ping:
    """A validated `location` ping and when the server received it."""

    fix: tracking.Fix
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Timer: has the rider been silent for the heartbeat period?"""


@dataclass(frozen=True, slots=True)
class HandlePending:
    """Timer: the coalescing window ended; handle the newest ping that waited for it."""


# ---------------------------------------------------------------- ports

# rider_locations columns: rider_id, order_id, lat, lng, heading, speed_kmh, accuracy_m,
# recorded_at, received_at
LocationRow = tuple[str, str | None, float, float, float | None, float | None, float | None, datetime, datetime]


class AvailabilityIndex(Protocol):
    """The index of available riders (Redis geo). Calls return at once: the index is written
    in order, in batches; a change of availability is written promptly, a move lazily."""

    def place(self, rider_id: str, lat: float, lng: float, *, urgent: bool) -> None: ...

    def withdraw(self, rider_id: str) -> None: ...


class LocationLog(Protocol):
    """The location history buffer (`rider_locations`, appended in batches)."""

    def append(self, row: LocationRow) -> None: ...


class LocationFanout(Protocol):
    """Delivers `rider:location` to an order's customer; never raises (a failed send is
    logged, the ping is still accepted)."""

    async def rider_location(self, order_id: str, payload: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class RiderStats:
    """Counters shared by the rider actors of one service (read at metrics scrape time:
    plain integers cost the hot path nothing)."""

    received: int = 0  # `location` events that reached the namespace
    invalid: int = 0  # refused by the schema or `tracking.validate`
    accepted: int = 0  # moved the track: history, index, fan-out
    coalesced: int = 0  # superseded by a newer ping within the coalescing window
    jump: int = 0  # dropped: implausible speed
    stale: int = 0  # dropped: not newer than the last accepted fix
    fanned_out: int = 0  # `rider:location` sent to an order's customer
    lapsed: int = 0  # riders made offline by a silent heartbeat period

    @property
    def handled(self) -> int:
        """Pings the rules looked at (accepted or dropped), as opposed to coalesced away."""
        return self.accepted + self.jump + self.stale


@dataclass(frozen=True, slots=True)
class Deps:
    """What a rider actor reaches the world through (given by the factory)."""

    index: AvailabilityIndex
    history: LocationLog
    fanout: LocationFanout
    tell: Callable[[str, str, Any], None]  # the actor system's `tell`: RiderUnavailable to orders
    eta: tracking.EtaEstimator
    stats: RiderStats
    heartbeat_seconds: float
    ping_interval: float = PING_MIN_INTERVAL_SECONDS
    clock: Callable[[], float] = time.monotonic


# The ping acks, built once: `online` tells the app whether it must send `rider:online` again
# (after `rider:offline` or a server restart), `dropped` why a fix moved nothing.
_ACKS: dict[tuple[bool, str | None], dict[str, Any]] = {
    (online, reason): {"online": online} if reason is None else {"online": online, "dropped": reason}
    for online in (True, False)
    for reason in (None, tracking.JUMP, tracking.STALE)
}


class RiderActor(Actor):
    kind: ClassVar[str] = RIDER_KIND
    __slots__ = (
        "_handled",
        "_heartbeat",
        "_pending",
        "_pending_timer",
        "_seen",
        "carrying",
        "deps",
        "held",
        "lapsed",
        "offers",
        "online",
        "track",
        "where",
    )

    def __init__(self, actor_id: str, deps: Deps) -> None:
        super().__init__(actor_id)
        self.deps = deps
        self.online = False
        self.lapsed = False  # offline because the heartbeat lapsed, not by choice
        self.track = tracking.Track()  # the fixes the rules accepted (jumps, speed)
        self.where: tracking.Fix | None = None  # latest known position (last fix or `rider:online`)
        self.offers: dict[str, datetime] = {}  # order id -> offer expiry
        self.held: str | None = None  # reserved for this order, not yet carrying it
        self.carrying: Carrying | None = None
        self._seen = 0.0  # monotonic time of the last sign of life
        self._handled: float | None = None  # monotonic time the last ping was handled
        self._pending: Ping | None = None  # the newest ping waiting for its coalescing window
        self._pending_timer: Any = None
        self._heartbeat: Any = None

    # ---------------------------------------------------------------- runtime hooks

    def idle(self) -> bool:
        """Only a rider with nothing going on may leave memory (an online one is in the index)."""
        return not (self.online or self.carrying or self.held or self.offers or self._pending)

    def on_passivate(self) -> None:
        for timer in (self._heartbeat, self._pending_timer):
            if timer is not None:
                timer.cancel()
        self._heartbeat = self._pending_timer = None

    def snapshot(self) -> dict[str, Any]:
        where = self.where
        return {
            "id": self.id,
            "online": self.online,
            "lapsed": self.lapsed,
            "available": self._available(),
            "position": None if where is None else {"lat": where.lat, "lng": where.lng},
            "speedKmh": self.track.speed_kmh,
            "offers": sorted(self.offers),
            "held": self.held,
            "carrying": None if self.carrying is None else self.carrying.order_id,
        }

    # ---------------------------------------------------------------- messages

    async def handle(self, msg: Any) -> Any:
        if isinstance(msg, Ping):  # the hot path first
            return await self._ping(msg)
        if isinstance(msg, HandlePending):
            return await self._handle_pending()
        if isinstance(msg, GoOnline):
            return self._go_online(msg)
        if isinstance(msg, GoOffline):
            return self._go_offline(lapsed=False)
        if isinstance(msg, Heartbeat):
            return self._check_heartbeat()
        if isinstance(msg, Reserve):
            return self._reserve(msg.order_id)
        if isinstance(msg, Release):
            return self._release(msg.order_id)
        if isinstance(msg, AssignmentOffered):
            return self._offered(msg)
        if isinstance(msg, AssignmentWithdrawn):
            self.offers.pop(msg.order_id, None)
            return None
        if isinstance(msg, Carrying):
            return await self._carry(msg)
        if isinstance(msg, LastLocation):
            carrying = self.carrying
            if carrying is None or carrying.order_id != msg.order_id or self.where is None:
                return None
            return self._location(carrying, self.where)
        raise EngineError("invalid", f"unknown message {type(msg).__name__}")

    # ---------------------------------------------------------------- pings

    async def _ping(self, msg: Ping) -> dict[str, Any]:
        now = self.deps.clock()
        self._seen = now
        if self.lapsed:
            self._resume()
        delay = tracking.coalesce_delay(self._handled, now, self.deps.ping_interval)
        if delay > 0:
            if self._pending is not None:
                self.deps.stats.coalesced += 1
            self._pending = msg
            if self._pending_timer is None:
                self._pending_timer = self.schedule(delay, HandlePending())
            return _ACKS[self.online, None]
        if self._pending is not None:  # older than this one and its window is over: superseded
            self.deps.stats.coalesced += 1
            self._pending = None
            self._pending_timer.cancel()
            self._pending_timer = None
        return await self._apply(msg, now)

    async def _handle_pending(self) -> dict[str, Any] | None:
        self._pending_timer = None
        if self._pending is None:
            return None
        now = self.deps.clock()
        delay = tracking.coalesce_delay(self._handled, now, self.deps.ping_interval)
        if delay > 0:  # a ping was handled since the timer was armed: wait for its window
            self._pending_timer = self.schedule(delay, HandlePending())
            return None
        pending, self._pending = self._pending, None
        return await self._apply(pending, now)

    async def _apply(self, msg: Ping, now: float) -> dict[str, Any]:
        """Run the rules on one ping; if accepted: history, index, customer."""
        self._handled = now
        stats = self.deps.stats
        fix = msg.fix
        self.track, reason = tracking.advance(self.track, fix)
        if reason is not None:
            if reason == tracking.JUMP:
                stats.jump += 1
            else:
                stats.stale += 1
            return _ACKS[self.online, reason]
        stats.accepted += 1
        self.where = fix
        carrying = self.carrying
        self.deps.history.append(
            (
                self.id,
                None if carrying is None else carrying.order_id,
                fix.lat,
                fix.lng,
                fix.heading,
                fix.speed_kmh,
                fix.accuracy_m,
                fix.recorded_at,
                msg.received_at,
            )
        )
        if carrying is not None:
            await self.deps.fanout.rider_location(carrying.order_id, self._location(carrying, fix))
            stats.fanned_out += 1
        elif self._available():
            self.deps.index.place(self.id, fix.lat, fix.lng, urgent=False)
        return _ACKS[self.online, None]

    def _location(self, carrying: Carrying, fix: tracking.Fix) -> dict[str, Any]:
        eta = self.deps.eta.eta_minutes(
            fix.lat, fix.lng, carrying.dropoff_lat, carrying.dropoff_lng, self.track.speed_kmh
        )
        return tracking.location_payload(carrying.order_id, fix, eta)

    # ---------------------------------------------------------------- presence

    def _available(self) -> bool:
        return self.online and self.held is None and self.carrying is None

    def _go_online(self, msg: GoOnline) -> dict[str, Any]:
        self.online, self.lapsed = True, False
        self._seen = self.deps.clock()
        if self.where is None or self.where.recorded_at < msg.at:
            self.where = tracking.Fix(msg.lat, msg.lng, msg.at)
        if self._available():
            self.deps.index.place(self.id, self.where.lat, self.where.lng, urgent=True)
        self._arm_heartbeat(self.deps.heartbeat_seconds)
        return _ACKS[True, None]

    def _go_offline(self, *, lapsed: bool) -> dict[str, Any]:
        """Offline by choice or by a silent heartbeat period: out of the index, offers given back."""
        self.online, self.lapsed = False, lapsed
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        self.deps.index.withdraw(self.id)
        offers, self.offers = self.offers, {}
        for order_id in offers:
            self.deps.tell(ORDER_KIND, order_id, RiderUnavailable(order_id, self.id))
        return _ACKS[False, None]

    def _resume(self) -> None:
        """Pings are back after a lapse: available again, where it last was."""
        self.online, self.lapsed = True, False
        if self._available() and self.where is not None:
            self.deps.index.place(self.id, self.where.lat, self.where.lng, urgent=True)
        self._arm_heartbeat(self.deps.heartbeat_seconds)

    def _arm_heartbeat(self, delay: float) -> None:
        """One timer per heartbeat period, not one per ping: it checks the last sign of life
        when it fires and re-arms for the rest of the period."""
        if self._heartbeat is None:
            self._heartbeat = self.schedule(delay, Heartbeat())

    def _check_heartbeat(self) -> None:
        self._heartbeat = None
        if not self.online:
            return
        silent = self.deps.clock() - self._seen
        if silent < self.deps.heartbeat_seconds:
            self._arm_heartbeat(self.deps.heartbeat_seconds - silent)
            return
        self.deps.stats.lapsed += 1
        self._go_offline(lapsed=True)

    # ---------------------------------------------------------------- assignments

    def _reserve(self, order_id: str) -> None:
        """Hold the rider for one order (one active assignment per rider)."""
        if self.held == order_id or (self.carrying is not None and self.carrying.order_id == order_id):
            return
        if self.held is not None or self.carrying is not None:
            raise EngineError("conflict", "the rider already has an active assignment")
        if not self.online:
            self.deps.index.withdraw(self.id)  # an entry left by a node that died with this rider online
            raise EngineError("conflict", "the rider is offline")
        self.held = order_id
        self.offers.pop(order_id, None)
        self.deps.index.withdraw(self.id)

    def _release(self, order_id: str) -> None:
        freed = False
        if self.held == order_id:
            self.held, freed = None, True
        if self.carrying is not None and self.carrying.order_id == order_id:
            self.carrying, freed = None, True
        self.offers.pop(order_id, None)
        if freed and self._available() and self.where is not None:
            self.deps.index.place(self.id, self.where.lat, self.where.lng, urgent=True)

    def _offered(self, msg: AssignmentOffered) -> None:
        if not self.online:  # found through a stale index entry: let dispatch move on at once
            self.deps.tell(ORDER_KIND, msg.order_id, RiderUnavailable(msg.order_id, self.id))
            return
        now = utcnow()
        for order_id, expires_at in list(self.offers.items()):
            if expires_at <= now:
                del self.offers[order_id]
        self.offers[msg.order_id] = msg.expires_at
        if len(self.offers) > RIDER_MAX_OFFERS:
            del self.offers[next(iter(self.offers))]

    async def _carry(self, msg: Carrying) -> None:
        other = self.carrying.order_id if self.carrying is not None else self.held
        if other is not None and other != msg.order_id:
            log.warning("carrying told while assigned elsewhere", extra={"rider": self.id, "order": msg.order_id})
            raise EngineError("conflict", "the rider already has an active assignment")
        self.carrying, self.held = msg, None
        self.offers.pop(msg.order_id, None)
        self.deps.index.withdraw(self.id)
        if self.where is not None:  # the customer sees the rider at once, not at the next ping
            await self.deps.fanout.rider_location(msg.order_id, self._location(msg, self.where))
            self.deps.stats.fanned_out += 1
