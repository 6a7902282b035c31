"""The rider-session actor on fakes the test reads: presence and the availability index, the
heartbeat (a manual timer and a clock the test moves), offers given back to a probe order
actor, the reserve rules, coalescing, jumps, and pings fanned out while carrying an order."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

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
from engine.rider_actor import Deps, GoOffline, GoOnline, LocationRow, Ping, RiderActor, RiderStats
from engine.runtime.actor import Actor, ActorSystem
from tests.helpers import eventually
from tests.unit.actor_support import MANUAL, ManualTimers

RID = "rider-1"
LAT, LNG = 6.5244, 3.3792
DROP = (6.6018, 3.3515)


class FakeIndex:
    """The availability index as the rider actors leave it."""

    def __init__(self) -> None:
        self.available: dict[str, tuple[float, float]] = {}
        self.calls: list[tuple[str, str, bool]] = []

    def place(self, rider_id: str, lat: float, lng: float, *, urgent: bool) -> None:
        self.available[rider_id] = (lat, lng)
        self.calls.append(("place", rider_id, urgent))

    def withdraw(self, rider_id: str) -> None:
        self.available.pop(rider_id, None)
        self.calls.append(("withdraw", rider_id, True))


class FakeLog:
    def __init__(self) -> None:
        self.rows: list[LocationRow] = []

    def append(self, row: LocationRow) -> None:
        self.rows.append(row)


class FakeFanout:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def rider_location(self, order_id: str, payload: dict[str, Any]) -> None:
        self.sent.append((order_id, payload))


class OrderProbe(Actor):
    """Stands in for the order actor: records what riders tell it."""

    kind = ORDER_KIND

    def __init__(self, actor_id: str, inbox: list[tuple[str, Any]]) -> None:
        super().__init__(actor_id)
        self.inbox = inbox

    async def handle(self, msg: Any) -> Any:
        self.inbox.append((self.id, msg))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    system: ActorSystem
    index: FakeIndex
    log: FakeLog
    fanout: FakeFanout
    stats: RiderStats
    clock: Clock
    timers: ManualTimers
    told: list[tuple[str, Any]] = field(default_factory=list)
    t: datetime = field(default_factory=utcnow)  # device time of the next ping

    async def ask(self, msg: Any) -> Any:
        return await self.system.ask(RIDER_KIND, RID, msg)

    async def ping(
        self, lat: float = LAT, lng: float = LNG, *, advance: float = 5.0, window: bool = True, **kw: Any
    ) -> Any:
        """A ping recorded `advance` seconds after the previous one; `window`: it arrives after
        the coalescing window of the previous one (the server clock moves past it), else within."""
        self.t += timedelta(seconds=advance)
        if window:
            self.clock.now += MANUAL
        return await self.ask(Ping(tracking.Fix(lat, lng, self.t, **kw), utcnow()))

    def actor(self) -> RiderActor:
        actor = self.system.get(RIDER_KIND, RID)
        assert isinstance(actor, RiderActor)
        return actor

    def fire_last_timer(self) -> None:
        self.timers.armed[-1].fire()


@pytest.fixture
async def world(timers: ManualTimers) -> AsyncIterator[World]:
    system = ActorSystem(mailbox_size=100, idle_seconds=60.0, ask_timeout=2.0)
    index, log, fanout, stats, clock = FakeIndex(), FakeLog(), FakeFanout(), RiderStats(), Clock()
    w = World(system, index, log, fanout, stats, clock, timers)
    deps = Deps(
        index=index,
        history=log,
        fanout=fanout,
        tell=system.tell,
        eta=tracking.SpeedEta(),
        stats=stats,
        heartbeat_seconds=MANUAL,  # the heartbeat timer waits for the test
        ping_interval=MANUAL,  # so does the coalescing window
        clock=clock,
    )
    system.register(RIDER_KIND, functools.partial(RiderActor, deps=deps))
    system.register(ORDER_KIND, functools.partial(OrderProbe, inbox=w.told))
    try:
        yield w
    finally:
        await system.stop()


def later(minutes: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


# ---------------------------------------------------------------- presence


async def test_online_makes_the_rider_available_and_offline_withdraws_it(world: World) -> None:
    assert await world.ask(GoOnline(LAT, LNG, utcnow())) == {"online": True}
    assert world.index.available == {RID: (LAT, LNG)} and world.index.calls == [("place", RID, True)]
    assert world.actor().snapshot()["available"] is True
    assert await world.ask(GoOffline()) == {"online": False}
    assert world.index.available == {}
    assert world.actor().idle() and not world.actor().snapshot()["available"]


async def test_an_available_rider_moves_in_the_index_lazily(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ping(LAT + 0.001)
    assert world.index.available[RID] == (LAT + 0.001, LNG)
    assert world.index.calls[-1] == ("place", RID, False)  # a move waits for the next index flush


async def test_going_offline_gives_back_every_offer(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(AssignmentOffered("o1", later()))
    await world.ask(AssignmentOffered("o2", later()))
    await world.ask(AssignmentWithdrawn("o2"))
    await world.ask(GoOffline())
    await eventually(lambda: len(world.told) == 1)
    assert world.told == [("o1", RiderUnavailable("o1", RID))]


async def test_an_offer_to_an_offline_rider_is_given_back_at_once(world: World) -> None:
    await world.ask(AssignmentOffered("o1", later()))
    await eventually(lambda: world.told == [("o1", RiderUnavailable("o1", RID))])
    assert world.actor().offers == {}


async def test_offers_are_bounded_and_expired_ones_forgotten(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(AssignmentOffered("old", datetime.now(UTC) - timedelta(seconds=1)))
    for i in range(20):
        await world.ask(AssignmentOffered(f"o{i}", later()))
    offers = world.actor().offers
    assert "old" not in offers and len(offers) == 8 and "o19" in offers


async def test_heartbeat_lapse_makes_the_rider_offline_and_gives_back_its_offer(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(AssignmentOffered("o1", later()))
    world.clock.now += MANUAL  # silent for the whole heartbeat period
    world.fire_last_timer()
    await eventually(lambda: world.told == [("o1", RiderUnavailable("o1", RID))])
    actor = world.actor()
    assert not actor.online and actor.lapsed and world.index.available == {}
    assert world.stats.lapsed == 1
    with pytest.raises(EngineError) as info:
        await world.ask(Reserve("o2"))  # never dispatched
    assert info.value.code == "conflict"
    # Its pings come back: available again where the ping says.
    assert await world.ping(LAT + 0.001) == {"online": True}
    assert actor.online and not actor.lapsed and world.index.available == {RID: (LAT + 0.001, LNG)}


async def test_a_rider_that_pings_survives_the_heartbeat(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    heartbeat = world.timers.armed[-1]
    await world.ping()  # a sign of life: the timer finds the rider recently seen
    heartbeat.fire()
    await eventually(lambda: world.actor()._heartbeat is not heartbeat)
    assert world.actor().online and world.stats.lapsed == 0


async def test_pings_after_going_offline_are_recorded_but_make_nothing_available(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(GoOffline())
    assert await world.ping() == {"online": False}
    assert world.index.available == {} and len(world.log.rows) == 1


# ---------------------------------------------------------------- reserve and release


async def test_reserve_rules(world: World) -> None:
    world.index.available[RID] = (LAT, LNG)  # left by a node that died with this rider online
    with pytest.raises(EngineError) as info:
        await world.ask(Reserve("o1"))
    assert info.value.code == "conflict" and "offline" in info.value.message
    assert world.index.available == {}  # the stale entry is gone: dispatch will not pick it again
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(AssignmentOffered("o1", later()))
    assert await world.ask(Reserve("o1")) is None
    assert world.index.available == {} and world.actor().held == "o1" and world.actor().offers == {}
    assert await world.ask(Reserve("o1")) is None  # idempotent
    with pytest.raises(EngineError) as info:
        await world.ask(Reserve("o2"))
    assert info.value.code == "conflict" and "active assignment" in info.value.message
    await world.ask(Release("o2"))  # not the held order: nothing changes
    assert world.actor().held == "o1"
    await world.ask(Release("o1"))
    assert world.actor().held is None and world.index.available == {RID: (LAT, LNG)}
    assert await world.ask(Reserve("o2")) is None


async def test_carrying_rules(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(Reserve("o1"))
    with pytest.raises(EngineError):
        await world.ask(Carrying("o2", *DROP))  # held for another order
    await world.ask(Carrying("o1", *DROP))
    assert world.actor().held is None and world.actor().carrying == Carrying("o1", *DROP)
    assert await world.ask(Reserve("o1")) is None  # still idempotent while carrying it
    with pytest.raises(EngineError):
        await world.ask(Reserve("o2"))
    assert world.index.available == {}
    await world.ask(Release("o1"))  # delivered
    assert world.actor().carrying is None and world.index.available == {RID: (LAT, LNG)}


# ---------------------------------------------------------------- pings


async def test_carrying_fans_pings_out_with_an_eta(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ask(Carrying("o1", *DROP))
    first = world.fanout.sent[0]  # the known position at once, not at the next ping
    assert first[0] == "o1" and (first[1]["lat"], first[1]["lng"]) == (LAT, LNG)
    assert await world.ping(LAT + 0.001, heading=10.0, speed_kmh=30.0) == {"online": True}
    order_id, payload = world.fanout.sent[-1]
    assert order_id == "o1"
    assert payload == {
        "orderId": "o1",
        "lat": LAT + 0.001,
        "lng": LNG,
        "heading": 10.0,
        "etaMinutes": tracking.SpeedEta().eta_minutes(LAT + 0.001, LNG, *DROP, 30.0),
        "recordedAt": payload["recordedAt"],
    }
    assert payload["etaMinutes"] >= 1 and world.stats.fanned_out == 2
    assert world.log.rows[-1][:4] == (RID, "o1", LAT + 0.001, LNG)
    assert world.index.available == {}  # carrying: never in the index, however it moves
    assert await world.ask(LastLocation("o1")) == payload
    assert await world.ask(LastLocation("o2")) is None
    await world.ask(Release("o1"))
    assert await world.ask(LastLocation("o1")) is None
    await world.ping(LAT + 0.002)
    assert len(world.fanout.sent) == 2 and world.log.rows[-1][1] is None


async def test_jumps_and_stale_fixes_are_dropped_and_counted(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ping(LAT)
    assert await world.ping(LAT + 1.0) == {"online": True, "dropped": tracking.JUMP}  # 111 km in 5 s
    assert await world.ping(LAT, advance=-5.0) == {"online": True, "dropped": tracking.STALE}  # same time
    assert world.stats.jump == 1 and world.stats.stale == 1 and world.stats.accepted == 1
    assert len(world.log.rows) == 1 and world.index.available[RID] == (LAT, LNG)


async def test_a_flood_is_coalesced_to_the_newest_ping(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ping(LAT)  # handled: the coalescing window starts
    for i in range(1, 11):  # ten more, all within the window (the server clock does not move)
        await world.ping(LAT + i * 0.00001, advance=0.01, window=False)
    assert world.stats.accepted == 1 and world.stats.coalesced == 9  # the tenth still waits
    assert len(world.log.rows) == 1
    world.clock.now += MANUAL  # the window is over
    world.fire_last_timer()
    await eventually(lambda: world.stats.accepted == 2)
    assert world.log.rows[-1][2] == LAT + 10 * 0.00001  # the newest, not the first of the burst
    assert world.stats.handled == 2 and world.stats.coalesced == 9
    assert world.actor()._pending is None


async def test_a_ping_after_the_window_supersedes_the_waiting_one(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    await world.ping(LAT)
    await world.ping(LAT + 0.0001, window=False)  # waits
    waiting = world.timers.armed[-1]
    await world.ping(LAT + 0.0002)  # the window is over: handled at once
    assert world.stats.accepted == 2 and world.stats.coalesced == 1
    assert waiting.cancelled() and world.log.rows[-1][2] == LAT + 0.0002


async def test_only_an_idle_rider_may_be_passivated(world: World) -> None:
    await world.ask(GoOnline(LAT, LNG, utcnow()))
    assert not world.system.passivate(RIDER_KIND, RID)
    await world.ask(GoOffline())
    assert world.system.passivate(RIDER_KIND, RID)
