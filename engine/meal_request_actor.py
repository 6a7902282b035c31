"""The actor that owns one meal request: the negotiation rules plus I/O around them.

A pure rule turns the current state and a command into a new state and its events; the
actor hands them to the writer and keeps the new state once the writer has taken it. The
reply and the broadcast wait for the commit (DESIGN "The path of one command"). A write
the writer refuses outright leaves the previous state in place; one that fails after it
was taken makes the actor forget everything and reload from PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from engine import negotiation as n
from engine import negotiation_views as views
from engine.clock import utcnow
from engine.errors import EngineError
from engine.limits import REMEMBERED_REPLIES
from engine.negotiation_statuses import OPEN
from engine.ports import NegotiationChange, NegotiationStore, Publisher, VendorDirectory
from engine.runtime.actor import Actor, Pending
from engine.runtime.write_chain import WriteChain

EXPIRE_RETRY_SECONDS = 1.0  # after the writer refused an expiry (queue full), try again this much later


MEAL_REQUEST_KIND = "meal_request"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A client command with who sent it and its idempotency key."""

    cmd: Any
    user_id: str
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """Snapshot for the owning customer, or for a vendor that may bid (in range) or has bid:
    a vendor sees the request and only its own offers."""

    user_id: str
    vendor_id: str | None = None
    vendor_lat: float = 0.0
    vendor_lng: float = 0.0
    vendor_km: float = 0.0
    vendor_verified: bool = True  # the /vendor namespace lets only verified vendors watch


@dataclass(frozen=True, slots=True)
class Expire:
    """Timer / sweeper message: expire the request if its deadline has passed."""


@dataclass(frozen=True, slots=True)
class Deps:
    """What an actor reaches the world through; given to each actor by the factory, so two
    actor systems in one process (two apps, tests) never share them."""

    store: NegotiationStore
    publisher: Publisher
    vendors: VendorDirectory


def _offer_reply(req: n.MealRequest, offer_id: str, events: list[n.Event]) -> dict[str, Any]:
    """The command's offer as its first event shows it (the view is built once per command)."""
    for e in events:
        view = e.payload.get("offer")
        if view is not None and view["id"] == offer_id:
            return {"offer": view}
    return {"offer": views.offer_view(req.offers[offer_id])}


# command type -> rule; create and accept are handled apart (other shapes).
_RULES: dict[type, Callable[[n.MealRequest, Any], tuple[n.MealRequest, list[n.Event]]]] = {
    n.PlaceOffer: n.place_offer,
    n.ReviseOffer: n.revise_offer,
    n.WithdrawOffer: n.withdraw_offer,
    n.CounterOffer: n.counter_offer,
    n.AcceptCounter: n.accept_counter,
    n.RejectOffer: n.reject_offer,
    n.CancelRequest: n.cancel_request,
}


_NEEDS_NEARBY = (n.AcceptOffer, n.CancelRequest)  # a tuple: `A | B` would build a union per command


class MealRequestActor(Actor):
    kind: ClassVar[str] = MEAL_REQUEST_KIND
    __slots__ = ("_nearby", "_timer", "_writes", "deps", "req")

    def __init__(self, actor_id: str, deps: Deps) -> None:
        super().__init__(actor_id)
        self.deps = deps
        # The state as of the last write the writer took (committed or still in flight).
        self.req: n.MealRequest | None = None
        self._writes = WriteChain(REMEMBERED_REPLIES)
        self._nearby: tuple[str, ...] | None = None  # vendors covering the delivery point (a cache)
        self._timer: asyncio.TimerHandle | None = None

    async def activate(self) -> None:
        await self._writes.settle()  # a reload must see every write still in flight
        loaded = await self.deps.store.load(self.id, REMEMBERED_REPLIES)
        self.req = loaded.request if loaded else None
        self._writes.replies = loaded.replies if loaded else {}
        self._nearby = None
        self._arm()

    def on_passivate(self) -> None:
        self._cancel_timer()

    def idle(self) -> bool:
        return self._writes.inflight == 0

    def snapshot(self) -> dict[str, Any]:
        if self.req is None:
            return {"id": self.id, "exists": False}
        return {
            "request": views.request_view(self.req),
            "offers": [views.offer_view(o) for o in self.req.offers.values()],
            "inflightWrites": self._writes.inflight,
            "nearbyVendors": len(self._nearby or ()),
        }

    def _cancel_timer(self) -> None:
        """Drop the expiry timer (the request closed, the actor leaves memory or reloads)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        self._cancel_timer()
        if self.req is not None and self.req.status == OPEN:
            delay = (self.req.expires_at - utcnow()).total_seconds()
            self._timer = self.schedule(delay, Expire())

    async def handle(self, msg: Any) -> Any:
        if isinstance(msg, Envelope):
            return await self._command(msg)
        if isinstance(msg, Watch):
            return self._watch(msg)
        if isinstance(msg, Expire):
            return await self._expire()
        raise EngineError("invalid", f"unknown message {type(msg).__name__}")

    async def _command(self, env: Envelope) -> Any:
        key = (env.user_id, env.client_msg_id) if env.client_msg_id else None
        if key is not None and key in self._writes.replies:
            return self._writes.replies[key]
        cmd = env.cmd
        if isinstance(cmd, n.CreateRequest):
            if self.req is not None:
                raise EngineError("conflict", "this request already exists")
            self._nearby = await self.deps.vendors.vendors_covering(cmd.delivery_lat, cmd.delivery_lng)
            created, events = n.create_request(cmd)
            pending = self._commit(created, events, None, key, {"request": views.request_view(created)})
            self._arm()
            return pending
        req = self.req
        if req is None:
            raise EngineError("not_found", "no such meal request")
        if isinstance(cmd, _NEEDS_NEARBY) and self._nearby is None:
            self._nearby = await self.deps.vendors.vendors_covering(req.delivery_lat, req.delivery_lng)
        order = None
        if isinstance(cmd, n.AcceptOffer):
            new, events, order = n.accept_offer(req, cmd)
            reply: Any = {"offer": _offer_reply(new, cmd.offer_id, events)["offer"], "order": views.order_view(order)}
        else:
            rule = _RULES.get(type(cmd))
            if rule is None:
                raise EngineError("invalid", f"unknown command {type(cmd).__name__}")
            new, events = rule(req, cmd)
            offer_id = getattr(cmd, "offer_id", None)
            reply = _offer_reply(new, offer_id, events) if offer_id else {"request": views.request_view(new)}
        pending = self._commit(new, events, order, key, reply)
        if new.status != OPEN:
            self._cancel_timer()
        return pending

    def _commit(
        self,
        new: n.MealRequest,
        events: list[n.Event],
        order: n.NewOrder | None,
        key: tuple[str, str] | None,
        reply: Any,
    ) -> Pending:
        """Hand the change to the writer and keep `new`; reply and publish once it is committed.

        A write the writer refuses (EngineError, e.g. its queue is full) raises here before
        anything changed: the actor keeps its previous state, which already holds every
        write still in flight. Writes of one actor form a chain: if one fails after the
        writer took it, the writer fails every later one (they were computed on top of it)
        and the actor forgets its memory and reloads from PostgreSQL. A reply remembered for
        a clientMsgId stays pending until its commit, so a retry is never told `ok` before
        the first attempt is durable.
        """
        # Every offer a rule changes appears in one of its events.
        offers = list(
            {
                e.payload["offer"]["id"]: new.offers[e.payload["offer"]["id"]] for e in events if "offer" in e.payload
            }.values()
        )
        change = NegotiationChange(
            new, views.offer_count(new), offers, events, order, (key[0], key[1], reply) if key else None
        )
        change.nearby = self._nearby or ()
        commit = self.deps.store.record(change, after=self._writes.last)  # refused: raises, nothing changed
        self.req = new
        nearby = self._nearby or ()
        return self._writes.track(commit, key, reply, lambda: self.deps.publisher.publish(change, nearby), self._forget)

    def _forget(self) -> None:
        """Drop memory that storage did not accept; the next message reloads from PostgreSQL."""
        self._writes.forget()
        self._cancel_timer()
        self.reset()

    def _watch(self, w: Watch) -> Any:
        req = self.req
        if req is None:
            raise EngineError("not_found", "no such meal request")
        if w.vendor_id is None and req.customer_id != w.user_id:
            raise EngineError("forbidden", "not your request")
        if w.vendor_id is not None and not views.vendor_may_view(
            status=req.status,
            delivery_lat=req.delivery_lat,
            delivery_lng=req.delivery_lng,
            has_offer=any(o.vendor_id == w.vendor_id for o in req.offers.values()),
            vendor_verified=w.vendor_verified,
            vendor_lat=w.vendor_lat,
            vendor_lng=w.vendor_lng,
            vendor_km=w.vendor_km,
        ):
            raise EngineError("forbidden", "this request is outside your service area")
        offers = [views.offer_view(o) for o in req.offers.values() if w.vendor_id in (None, o.vendor_id)]
        data = {"request": views.request_view(req), "offers": offers}
        return self._writes.when_committed(data)  # answer once what the snapshot shows is committed

    async def _expire(self) -> Any:
        req = self.req
        if req is None or req.status != OPEN:
            return None
        if utcnow() < req.expires_at:
            self._arm()  # fired early (clock skew): try again at the deadline
            return None
        if self._nearby is None:
            self._nearby = await self.deps.vendors.vendors_covering(req.delivery_lat, req.delivery_lng)
        new, events = n.expire_request(req, utcnow())
        try:
            pending = self._commit(new, events, None, None, None)
        except EngineError:  # refused: still OPEN in memory; try again soon rather than wait for the sweeper
            self._cancel_timer()
            self._timer = self.schedule(EXPIRE_RETRY_SECONDS, Expire())
            raise
        self._cancel_timer()
        return pending
