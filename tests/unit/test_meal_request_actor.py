"""The meal-request actor around the pure rules, on an in-memory store the test drives:
replies and broadcasts wait for the commit, a refused write keeps the previous state (no
reload), a write that fails after the writer took it makes the actor reload, and each
actor system hands its actors its own dependencies."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine import meal_request_actor as mra
from engine import negotiation as n
from engine.clock import utcnow
from engine.errors import EngineError
from engine.meal_request_actor import Deps, Envelope, MealRequestActor, Watch
from engine.ports import Loaded, NegotiationChange
from engine.runtime.actor import ActorSystem
from tests.helpers import eventually
from tests.unit.actor_support import MANUAL, ManualTimers, spawn

KIND = MealRequestActor.kind
RID = "req-1"
CUSTOMER = "cust-1"
LAT, LNG = 6.5244, 3.3792


class FakeStore:
    """A NegotiationStore whose writes the test refuses, commits or fails one by one."""

    def __init__(self) -> None:
        self.writes: list[tuple[NegotiationChange, asyncio.Future[None]]] = []
        self.refuse = False
        self.refused = 0
        self.loads = 0
        self.stored: Loaded | None = None

    def record(self, change: NegotiationChange, after: asyncio.Future[None] | None) -> asyncio.Future[None]:
        if self.refuse:
            self.refused += 1
            raise EngineError("unavailable", "storage is behind, retry shortly")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writes.append((change, fut))
        return fut

    def commit_all(self) -> None:
        for _, fut in self.writes:
            if not fut.done():
                fut.set_result(None)

    async def load(self, request_id: str, reply_limit: int) -> Loaded | None:
        self.loads += 1
        return self.stored

    async def events_since(self, request_id: str, since_seq: int, limit: int) -> list[dict[str, Any]]:
        return []


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[NegotiationChange] = []

    def publish(self, change: NegotiationChange, nearby: tuple[str, ...]) -> None:
        self.published.append(change)


class FakeVendors:
    async def vendors_covering(self, lat: float, lng: float) -> tuple[str, ...]:
        return ("v1", "v2")


@pytest.fixture
async def world() -> AsyncIterator[tuple[ActorSystem, FakeStore, FakePublisher]]:
    store, publisher = FakeStore(), FakePublisher()
    system = ActorSystem(mailbox_size=100, idle_seconds=60.0, ask_timeout=2.0)
    system.register(KIND, functools.partial(MealRequestActor, deps=Deps(store, publisher, FakeVendors())))
    try:
        yield system, store, publisher
    finally:
        await system.stop()


def create(**kw: Any) -> Envelope:
    args: dict[str, Any] = dict(
        request_id=RID,
        customer_id=CUSTOMER,
        category="jollof",
        budget_min_kobo=1,
        budget_max_kobo=500_000,
        delivery_lat=LAT,
        delivery_lng=LNG,
        address_line="Ikeja",
        now=utcnow(),
    )
    args.update(kw)
    return Envelope(n.CreateRequest(**args), CUSTOMER)


def place(vendor: str = "v1", price: int = 300_000, offer_id: str = "off-1") -> Envelope:
    return Envelope(
        n.PlaceOffer(
            offer_id=offer_id,
            vendor_id=vendor,
            vendor_name=vendor,
            vendor_verified=True,
            vendor_lat=LAT,
            vendor_lng=LNG,
            vendor_km=5.0,
            price_kobo=price,
            now=utcnow(),
        ),
        vendor,
    )


def revise(price: int, vendor: str = "v1", offer_id: str = "off-1", msg_id: str | None = None) -> Envelope:
    return Envelope(n.ReviseOffer(offer_id=offer_id, vendor_id=vendor, price_kobo=price, now=utcnow()), vendor, msg_id)


async def committed(system: ActorSystem, store: FakeStore, env: Envelope) -> Any:
    """Ask, let the store commit the write, return the reply."""
    asked = spawn(system.ask(KIND, RID, env))
    await eventually(lambda: asked.done() or any(not f.done() for _, f in store.writes))
    store.commit_all()
    return await asyncio.wait_for(asked, 2.0)


def actor_of(system: ActorSystem) -> MealRequestActor:
    actor = system.get(KIND, RID)
    assert isinstance(actor, MealRequestActor)
    return actor


async def test_reply_and_broadcast_wait_for_the_commit(world: tuple[ActorSystem, FakeStore, FakePublisher]) -> None:
    system, store, publisher = world
    asked = spawn(system.ask(KIND, RID, create()))
    await eventually(lambda: len(store.writes) == 1)
    assert not asked.done() and publisher.published == []
    store.commit_all()
    reply = await asyncio.wait_for(asked, 2.0)
    assert reply["request"]["id"] == RID and reply["request"]["seq"] == 1
    await eventually(lambda: len(publisher.published) == 1)
    assert store.writes[0][0].request is actor_of(system).req  # the stored snapshot is the kept state


async def test_refused_write_keeps_the_previous_state(world: tuple[ActorSystem, FakeStore, FakePublisher]) -> None:
    system, store, publisher = world
    await committed(system, store, create())
    await committed(system, store, place())
    actor = actor_of(system)
    before = actor.req
    assert before is not None and before.seq == 2
    store.refuse = True
    for env in (revise(250_000, msg_id="m1"), Envelope(n.CancelRequest(customer_id=CUSTOMER, now=utcnow()), CUSTOMER)):
        with pytest.raises(EngineError) as err:
            await system.ask(KIND, RID, env)
        assert err.value.code == "unavailable"
        assert actor.req is before  # nothing to undo: the new state was never kept
    assert store.refused == 2 and store.loads == 1  # no reload
    assert actor._timer is not None  # the refused cancel did not disarm the expiry
    published = len(publisher.published)
    store.refuse = False
    reply = await committed(system, store, revise(250_000, msg_id="m1"))  # the retry is applied, once
    assert reply["offer"]["priceKobo"] == 250_000
    assert actor.req is not None and actor.req.seq == 3 and store.loads == 1
    await eventually(lambda: len(publisher.published) == published + 1)


async def test_failed_write_after_acceptance_reloads(world: tuple[ActorSystem, FakeStore, FakePublisher]) -> None:
    system, store, _ = world
    await committed(system, store, create())
    actor = actor_of(system)
    stored = actor.req
    assert stored is not None
    first = spawn(system.ask(KIND, RID, place()))
    await eventually(lambda: len(store.writes) == 2)
    second = spawn(system.ask(KIND, RID, revise(280_000)))  # computed on top of the first, still in flight
    await eventually(lambda: len(store.writes) == 3)
    assert actor.req is not None and actor.req.seq == 3
    store.writes[1][1].set_exception(ConnectionResetError("lost"))
    store.writes[2][1].set_exception(EngineError("unavailable", "an earlier write failed"))  # as the writer does
    for asked in (first, second):
        with pytest.raises(EngineError) as err:
            await asyncio.wait_for(asked, 2.0)
        assert err.value.code == "unavailable"
    store.stored = Loaded(stored, {})
    view = await system.ask(KIND, RID, Watch(CUSTOMER))
    assert store.loads == 2 and view["request"]["seq"] == 1 and view["offers"] == []


async def test_refused_expiry_is_retried(
    world: tuple[ActorSystem, FakeStore, FakePublisher], timers: ManualTimers, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, store, publisher = world
    monkeypatch.setattr(mra, "EXPIRE_RETRY_SECONDS", MANUAL)
    # Due in 300 ms: the refusal below must be in place before the timer fires, and creating the
    # request on a loaded machine took longer than the 6 ms this once allowed.
    await committed(system, store, create(expires_in_minutes=1, time_scale=5e-3))
    store.refuse = True
    await eventually(lambda: store.refused == 1)  # the expiry timer fired; the writer refused
    actor = actor_of(system)
    assert actor.req is not None and actor.req.status == "OPEN"
    store.refuse = False
    [retry] = timers.armed
    retry.fire()
    await eventually(lambda: len(store.writes) == 2)
    store.commit_all()
    assert actor.req.status == "EXPIRED"
    await eventually(lambda: [e.kind for e in publisher.published[-1].events] == ["request:expired", "request:closed"])


async def test_watch_follows_vendor_may_view(world: tuple[ActorSystem, FakeStore, FakePublisher]) -> None:
    system, store, _ = world
    await committed(system, store, create())
    await committed(system, store, place(vendor="v1"))
    near: dict[str, Any] = {"vendor_lat": LAT, "vendor_lng": LNG, "vendor_km": 5.0}
    far: dict[str, Any] = {"vendor_lat": LAT + 1.0, "vendor_lng": LNG, "vendor_km": 5.0}
    snap = await system.ask(KIND, RID, Watch("u2", "v2", **near))
    assert snap["offers"] == []  # may bid, sees only its own offers (none)
    assert [o["vendorId"] for o in (await system.ask(KIND, RID, Watch("u1", "v1", **far)))["offers"]] == ["v1"]
    for watch in (Watch("u3", "v3", **far), Watch("u2", "v2", **near, vendor_verified=False)):
        with pytest.raises(EngineError) as err:
            await system.ask(KIND, RID, watch)
        assert err.value.code == "forbidden"
    with pytest.raises(EngineError) as err:
        await system.ask(KIND, RID, Watch("someone-else"))
    assert err.value.code == "forbidden"


async def test_each_system_gives_its_actors_its_own_deps() -> None:
    stores = [FakeStore(), FakeStore()]
    systems = []
    for store in stores:
        system = ActorSystem(mailbox_size=10, idle_seconds=60.0, ask_timeout=2.0)
        system.register(KIND, functools.partial(MealRequestActor, deps=Deps(store, FakePublisher(), FakeVendors())))
        systems.append(system)
    try:
        for system, store in zip(systems, stores, strict=True):
            await committed(system, store, create())
        assert [len(s.writes) for s in stores] == [1, 1]
        assert actor_of(systems[0]).deps.store is stores[0] and actor_of(systems[1]).deps.store is stores[1]
    finally:
        for system in systems:
            await system.stop()
