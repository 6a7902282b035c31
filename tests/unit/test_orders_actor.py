"""The order actor on an in-memory store, a fake rider directory and a probe rider actor: replies,
broadcasts and tells wait for the commit; dispatch offers the nearest rider radius by radius and
moves on after a decline, a timeout or the rider going offline; a wrong code is stored before it
is refused; deadlines are re-armed on activation; a failed write reloads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from engine import orders as o
from engine.assignment import (
    ORDER_KIND,
    RIDER_KIND,
    AssignmentOffered,
    AssignmentWithdrawn,
    Carrying,
    Release,
    RiderCandidate,
    RiderUnavailable,
)
from engine.clock import utcnow
from engine.errors import EngineError
from engine.order_actor import Deps, Envelope, LoadedOrder, OrderActor, OrderChange, Watch
from engine.runtime.actor import Actor, ActorSystem
from engine.state import evolve
from tests.helpers import eventually
from tests.unit.actor_support import spawn
from tests.unit.order_support import CODE, CUSTOMER, ORDER_ID, RIDER, VENDOR, at_status, new_order


class FakeStore:
    """An OrderStore whose writes commit at once (`auto`) or when the test says."""

    def __init__(self) -> None:
        self.writes: list[tuple[OrderChange, asyncio.Future[None]]] = []
        self.stored: LoadedOrder | None = None
        self.loads = 0
        self.auto = True

    def record(self, change: OrderChange, after: asyncio.Future[None] | None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writes.append((change, fut))
        if self.auto:
            fut.get_loop().call_soon(lambda: fut.done() or fut.set_result(None))
        return fut

    def commit_all(self) -> None:
        for _, fut in self.writes:
            if not fut.done():
                fut.set_result(None)

    async def load(self, order_id: str, reply_limit: int) -> LoadedOrder | None:
        self.loads += 1
        return self.stored

    def keep(self, order: o.Order) -> None:
        self.stored = LoadedOrder(order, {})


@dataclass
class FakePublisher:
    published: list[OrderChange] = field(default_factory=list)

    def publish(self, change: OrderChange) -> None:
        self.published.append(change)

    def kinds(self) -> list[str]:
        return [e.kind for c in self.published for e in c.events]

    def offers(self) -> list[str]:
        return [e.targets[0] for c in self.published for e in c.events if e.kind == o.ASSIGNMENT_OFFER]


@dataclass
class FakeRiders:
    """Available riders by radius: `near[km]` is what a search within `km` finds."""

    near: dict[float, list[RiderCandidate]] = field(default_factory=dict)
    asked: list[float] = field(default_factory=list)

    async def available_near(self, lat: float, lng: float, km: float, limit: int) -> list[RiderCandidate]:
        self.asked.append(km)
        return [c for r, cs in self.near.items() if r <= km for c in cs][:limit]


class RiderProbe(Actor):
    """Stands in for the rider helper's actor: records what it is told."""

    kind = RIDER_KIND

    def __init__(self, actor_id: str, inbox: list[tuple[str, Any]]) -> None:
        super().__init__(actor_id)
        self.inbox = inbox

    async def handle(self, msg: Any) -> Any:
        self.inbox.append((self.id, msg))
        return None


@dataclass
class World:
    system: ActorSystem
    store: FakeStore
    publisher: FakePublisher
    riders: FakeRiders
    inbox: list[tuple[str, Any]]

    async def ask(self, msg: Any) -> Any:
        return await self.system.ask(ORDER_KIND, ORDER_ID, msg)

    def told(self, kind: type) -> list[tuple[str, Any]]:
        return [(r, m) for r, m in self.inbox if isinstance(m, kind)]


def make_world(policy: o.Policy) -> World:
    store, publisher, riders, inbox = FakeStore(), FakePublisher(), FakeRiders(), []
    system = ActorSystem(mailbox_size=100, idle_seconds=60.0, ask_timeout=2.0)
    deps = Deps(store, publisher, riders, policy, system.tell)
    system.register(ORDER_KIND, functools.partial(OrderActor, deps=deps))
    system.register(RIDER_KIND, lambda rid: RiderProbe(rid, inbox))
    return World(system, store, publisher, riders, inbox)


@pytest.fixture
async def worlds() -> AsyncIterator[list[World]]:
    made: list[World] = []
    yield made
    for w in made:
        await w.system.stop()


@pytest.fixture
def world(worlds: list[World]) -> World:
    """A world with the default policy; `world_with` for other timings."""
    return world_with(worlds)


def world_with(worlds: list[World], **policy: Any) -> World:
    w = make_world(o.Policy(**policy))
    worlds.append(w)
    return w


def fresh(status: str = o.PENDING_PAYMENT, **kw: Any) -> o.Order:
    """An order at `status` whose clock is now, so its deadlines lie ahead."""
    return at_status(status, t0=utcnow() - timedelta(minutes=2), **kw)


def pay() -> o.PaymentConfirmed:
    return o.PaymentConfirmed(delivery_code=CODE, now=utcnow())


# ---------------------------------------------------------------- commit first


async def test_reply_and_broadcast_wait_for_the_commit(world: World) -> None:
    world.store.keep(fresh())
    world.store.auto = False
    reply = spawn(world.ask(pay()))
    await eventually(lambda: bool(world.store.writes), what="the write")
    await asyncio.sleep(0)
    assert not reply.done() and world.publisher.published == []
    world.store.commit_all()
    data = await reply
    assert data["order"]["status"] == o.CONFIRMED and "deliveryCode" not in data["order"]
    assert world.publisher.kinds()[0] == o.ORDER_STATUS
    change = world.store.writes[0][0]
    assert change.due_at == o.next_deadline(change.order, o.Policy())


async def test_unknown_order_is_not_found(world: World) -> None:
    with pytest.raises(EngineError) as err:
        await world.ask(Watch(o.CUSTOMER, CUSTOMER))
    assert err.value.code == "not_found"


async def test_watch_checks_the_party_and_shows_the_code_to_the_customer_only(world: World) -> None:
    world.store.keep(fresh(o.READY))
    mine = await world.ask(Watch(o.CUSTOMER, CUSTOMER))
    assert mine["order"]["deliveryCode"] == CODE
    theirs = await world.ask(Watch(o.VENDOR, VENDOR))
    assert "deliveryCode" not in theirs["order"]
    assert "deliveryCode" not in (await world.ask(Watch(o.RIDER, RIDER)))["order"]
    for audience, party in ((o.CUSTOMER, "cust-2"), (o.VENDOR, "vend-2"), (o.RIDER, "rider-2"), ("admin", "x")):
        with pytest.raises(EngineError) as err:
            await world.ask(Watch(audience, party))
        assert err.value.code == "forbidden"


# ---------------------------------------------------------------- dispatch


async def test_payment_starts_dispatch_nearest_first_widening_the_radius(world: World) -> None:
    world.store.keep(fresh())
    world.riders.near = {6.0: [RiderCandidate("far", 5.5), RiderCandidate("near", 4.0)]}
    await world.ask(pay())
    await eventually(lambda: world.told(AssignmentOffered), what="an offer to a rider")
    assert [r for r, _ in world.told(AssignmentOffered)] == ["near"]
    assert world.riders.asked == [3.0, 6.0]
    assert world.publisher.offers() == ["rider:near"]


async def test_decline_offers_the_next_rider_and_never_the_same_again(world: World) -> None:
    world.store.keep(fresh())
    world.riders.near = {3.0: [RiderCandidate("a", 1.0), RiderCandidate("b", 2.0)]}
    await world.ask(pay())
    await eventually(lambda: world.publisher.offers() == ["rider:a"], what="the first offer")
    reply = await world.ask(Envelope(o.DeclineAssignment(rider_id="a", now=utcnow()), "user-a"))
    assert reply == {"orderId": ORDER_ID}
    await eventually(lambda: world.publisher.offers() == ["rider:a", "rider:b"], what="the second offer")
    await eventually(lambda: ("a", AssignmentWithdrawn(ORDER_ID)) in world.inbox, what="the withdrawal")
    await world.ask(Envelope(o.DeclineAssignment(rider_id="b", now=utcnow()), "user-b"))
    await eventually(lambda: world.riders.asked.count(20.0) >= 1, what="a search out to 20 km")
    actor = world.system.get(ORDER_KIND, ORDER_ID)
    assert isinstance(actor, OrderActor) and actor.order is not None
    await eventually(lambda: actor.order is not None and actor.order.dispatch.retry_at is not None)
    assert world.publisher.offers() == ["rider:a", "rider:b"]  # nobody left: a retry is planned


async def test_an_unanswered_offer_times_out_and_goes_to_the_next_rider(worlds: list[World]) -> None:
    world = world_with(worlds, offer_ttl=timedelta(milliseconds=50))
    world.store.keep(fresh())
    world.riders.near = {3.0: [RiderCandidate("a", 1.0), RiderCandidate("b", 2.0)]}
    await world.ask(pay())
    await eventually(lambda: world.publisher.offers()[:2] == ["rider:a", "rider:b"], what="the timeout")
    assert o.ASSIGNMENT_REVOKED in world.publisher.kinds()
    with pytest.raises(EngineError) as err:  # too late for a
        await world.ask(Envelope(o.AcceptAssignment(rider_id="a", rider_user_id="user-a", now=utcnow()), "user-a"))
    assert err.value.code == "conflict"


async def test_a_rider_going_offline_while_offered_moves_dispatch_on(world: World) -> None:
    world.store.keep(fresh())
    world.riders.near = {3.0: [RiderCandidate("a", 1.0), RiderCandidate("b", 2.0)]}
    await world.ask(pay())
    await eventually(lambda: world.publisher.offers() == ["rider:a"])
    world.system.tell(ORDER_KIND, ORDER_ID, RiderUnavailable(ORDER_ID, "a"))
    await eventually(lambda: world.publisher.offers() == ["rider:a", "rider:b"], what="the next offer")
    dispatch = world.store.writes[-1][0].order.dispatch  # what was stored moved on too
    assert dispatch.offered_rider_id == "b"
    assert "a" in dispatch.skipped


async def test_accept_tells_the_rider_it_carries_the_order_after_commit(world: World) -> None:
    world.store.keep(fresh())
    world.riders.near = {3.0: [RiderCandidate("a", 1.0)]}
    await world.ask(pay())
    await eventually(lambda: world.publisher.offers() == ["rider:a"])
    world.store.auto = False
    accept = spawn(world.ask(Envelope(o.AcceptAssignment(rider_id="a", rider_user_id="ua", now=utcnow()), "ua")))
    await eventually(lambda: any(not f.done() for _, f in world.store.writes), what="the accept's write")
    await asyncio.sleep(0)
    assert world.told(Carrying) == []
    world.store.commit_all()
    reply = await accept
    assert reply["order"]["riderId"] == "a"
    await eventually(lambda: world.told(Carrying) == [("a", Carrying(ORDER_ID, 6.54, 3.39))])


# ---------------------------------------------------------------- rider updates and idempotency


async def test_a_wrong_code_is_stored_then_refused(world: World) -> None:
    world.store.keep(fresh(o.OUT_FOR_DELIVERY))
    cmd = o.RiderUpdate(rider_id=RIDER, status=o.DELIVERED, delivery_code="999999", now=utcnow())
    with pytest.raises(EngineError) as err:
        await world.ask(Envelope(cmd, "ru"))
    assert err.value.code == "forbidden" and "4 attempt" in err.value.message
    [(change, _)] = world.store.writes
    assert change.order.code_attempts == 1 and change.events == []
    ok = o.RiderUpdate(rider_id=RIDER, status=o.DELIVERED, delivery_code=CODE, now=utcnow())
    assert (await world.ask(Envelope(ok, "ru")))["order"]["status"] == o.DELIVERED
    await eventually(lambda: world.told(Release) == [(RIDER, Release(ORDER_ID))])


async def test_a_repeated_client_msg_id_gets_the_first_answer(world: World) -> None:
    world.store.keep(fresh(o.CONFIRMED, with_rider=False))
    cmd = o.CustomerCancel(customer_id=CUSTOMER, reason="late", now=utcnow())
    first = await world.ask(Envelope(cmd, CUSTOMER, "m1"))
    again = await world.ask(Envelope(cmd, CUSTOMER, "m1"))
    assert first == again and first["order"]["status"] == o.CANCELED and first["order"]["deliveryCode"] == CODE
    assert len([c for c, _ in world.store.writes if c.reply is not None]) == 1


async def test_a_failed_write_makes_the_actor_reload(world: World) -> None:
    world.store.keep(fresh(o.CONFIRMED))  # a rider is assigned: no dispatch writes of its own
    world.store.auto = False
    cmd = o.VendorUpdate(vendor_id=VENDOR, status=o.PREPARING, now=utcnow())
    attempt = spawn(world.ask(Envelope(cmd, "vu")))
    await eventually(lambda: len(world.store.writes) == 1)
    world.store.writes[0][1].set_exception(EngineError("unavailable", "write rejected"))
    with pytest.raises(EngineError):
        await attempt
    world.store.auto = True
    loads = world.store.loads
    assert (await world.ask(Watch(o.VENDOR, VENDOR)))["order"]["status"] == o.CONFIRMED
    assert world.store.loads == loads + 1


# ---------------------------------------------------------------- durable deadlines


async def test_activation_rearms_an_offer_that_expired_while_nobody_held_the_order(world: World) -> None:
    order = fresh(o.CONFIRMED, with_rider=False)
    past = utcnow() - timedelta(seconds=1)
    stale = evolve(order, dispatch=o.Dispatch(offered_rider_id="a", offer_expires_at=past))
    world.store.keep(stale)
    world.riders.near = {3.0: [RiderCandidate("a", 1.0), RiderCandidate("b", 2.0)]}
    await world.ask(Watch(o.VENDOR, VENDOR))  # any message activates it
    await eventually(lambda: world.publisher.offers() == ["rider:b"], what="the re-armed offer timeout")
    await eventually(lambda: ("a", AssignmentWithdrawn(ORDER_ID)) in world.inbox, what="the withdrawal")
    dispatch = world.store.writes[-1][0].order.dispatch
    assert dispatch.offered_rider_id == "b" and "a" in dispatch.skipped
    assert world.told(AssignmentWithdrawn) == [("a", AssignmentWithdrawn(ORDER_ID))]


async def test_an_unpaid_order_is_canceled_by_its_timer(worlds: list[World]) -> None:
    world = world_with(worlds, unpaid_cancel=timedelta(milliseconds=100))
    world.store.keep(new_order(created_at=utcnow(), updated_at=utcnow()))
    await world.ask(Watch(o.CUSTOMER, CUSTOMER))
    await eventually(lambda: o.ORDER_STATUS in world.publisher.kinds(), what="the unpaid cancel")
    change = world.publisher.published[0]
    assert change.order.status == o.CANCELED and change.due_at is None


async def test_loading_an_assigned_order_tells_its_rider_again(world: World) -> None:
    """After a restart the rider actor has forgotten what it carries: the order reminds it."""
    order = fresh(o.PICKED_UP)
    assert order.rider_id is not None
    world.store.keep(order)
    await world.ask(Watch(o.CUSTOMER, CUSTOMER))  # any message activates it
    expected = (order.rider_id, Carrying(ORDER_ID, order.delivery_lat, order.delivery_lng))
    await eventually(lambda: world.told(Carrying) == [expected], what="Carrying told on activation")


async def test_loading_a_finished_order_tells_no_rider(world: World) -> None:
    world.store.keep(fresh(o.DELIVERED))
    await world.ask(Watch(o.CUSTOMER, CUSTOMER))
    await world.ask(Watch(o.CUSTOMER, CUSTOMER))  # a second turn: a tell from activation would be in by now
    assert world.told(Carrying) == []
