"""The actor that owns one meal request: the negotiation rules plus I/O around them.

A command is applied to the in-memory state by a pure rule, its rows go to the writer,
and the reply and the broadcast wait for the commit (DESIGN "The path of one command").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from engine import negotiation as n
from engine.clock import utcnow
from engine.errors import EngineError
from engine.ports import NegotiationChange, NegotiationStore, Publisher, VendorDirectory
from engine.runtime.actor import Actor, Pending

REMEMBERED_REPLIES = 32  # clientMsgId answers kept per request for retries


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


@dataclass(frozen=True, slots=True)
class Expire:
    """Timer / sweeper message: expire the request if its deadline has passed."""


@dataclass(frozen=True, slots=True)
class Deps:
    store: NegotiationStore
    publisher: Publisher
    vendors: VendorDirectory


def _offer_reply(req: n.MealRequest, offer_id: str, events: list[n.Event]) -> dict[str, Any]:
    """The command's offer as its first event shows it (the view is built once per command)."""
    for e in events:
        view = e.payload.get("offer")
        if view is not None and view["id"] == offer_id:
            return {"offer": view}
    return {"offer": n.offer_view(req.offers[offer_id])}


# command type -> rule; create and accept are handled apart (other shapes).
_RULES: dict[type, Callable[[n.MealRequest, Any], list[n.Event]]] = {
    n.PlaceOffer: n.place_offer,
    n.ReviseOffer: n.revise_offer,
    n.WithdrawOffer: n.withdraw_offer,
    n.CounterOffer: n.counter_offer,
    n.AcceptCounter: n.accept_counter,
    n.RejectOffer: n.reject_offer,
    n.CancelRequest: n.cancel_request,
}


class MealRequestActor(Actor):
    kind: ClassVar[str] = "meal_request"
    deps: ClassVar[Deps]
    __slots__ = ("_generation", "_inflight", "_last", "_nearby", "_replies", "_timer", "req")

    def __init__(self, actor_id: str) -> None:
        super().__init__(actor_id)
        self.req: n.MealRequest | None = None
        self._replies: dict[tuple[str, str], Any] = {}
        self._nearby: tuple[str, ...] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = 0
        self._last: asyncio.Future[None] | None = None
        self._generation = 0

    async def activate(self) -> None:
        if self._last is not None and not self._last.done():
            await asyncio.wait([self._last])  # a reload must see every write still in flight
        loaded = await self.deps.store.load(self.id, REMEMBERED_REPLIES)
        self.req = loaded.request if loaded else None
        self._replies = loaded.replies if loaded else {}
        self._nearby = None
        self._arm()

    def deactivate(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def idle(self) -> bool:
        return self._inflight == 0

    def snapshot(self) -> dict[str, Any]:
        if self.req is None:
            return {"id": self.id, "exists": False}
        return {"request": n.request_view(self.req), "offers": [n.offer_view(o) for o in self.req.offers.values()],
                "inflightWrites": self._inflight, "nearbyVendors": len(self._nearby or ())}

    def _arm(self) -> None:
        self.deactivate()
        if self.req is not None and self.req.status == n.OPEN:
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
        if key is not None and key in self._replies:
            return self._replies[key]
        cmd = env.cmd
        if isinstance(cmd, n.CreateRequest):
            if self.req is not None:
                raise EngineError("conflict", "this request already exists")
            nearby = await self.deps.vendors.vendors_covering(cmd.delivery_lat, cmd.delivery_lng)
            created, events = n.create_request(cmd)
            self.req, self._nearby = created, nearby
            self._arm()
            return self._commit(events, None, key, {"request": n.request_view(created)})
        req = self.req
        if req is None:
            raise EngineError("not_found", "no such meal request")
        if isinstance(cmd, n.AcceptOffer | n.CancelRequest) and self._nearby is None:
            self._nearby = await self.deps.vendors.vendors_covering(req.delivery_lat, req.delivery_lng)
        order = None
        if isinstance(cmd, n.AcceptOffer):
            events, order = n.accept_offer(req, cmd)
            reply: Any = {"offer": n.offer_view(req.offers[cmd.offer_id]), "order": n.order_view(order)}
        else:
            rule = _RULES.get(type(cmd))
            if rule is None:
                raise EngineError("invalid", f"unknown command {type(cmd).__name__}")
            events = rule(req, cmd)
            offer_id = getattr(cmd, "offer_id", None)
            reply = _offer_reply(req, offer_id, events) if offer_id else {"request": n.request_view(req)}
        if req.status != n.OPEN:
            self.deactivate()
        return self._commit(events, order, key, reply)

    def _commit(self, events: list[n.Event], order: n.NewOrder | None,
                key: tuple[str, str] | None, reply: Any) -> Pending:
        """Hand the change to the writer; reply and publish once it is committed.

        Writes of one actor form a chain: if one fails, the writer fails every later one
        (they were computed on top of it) and the actor reloads from PostgreSQL. A reply
        remembered for a clientMsgId stays pending until its commit, so a retry is never
        told `ok` before the first attempt is durable.
        """
        req = self.req
        assert req is not None
        # Every offer a rule changes appears in one of its events.
        offers = list({e.payload["offer"]["id"]: req.offers[e.payload["offer"]["id"]]
                       for e in events if "offer" in e.payload}.values())
        change = NegotiationChange(req, n.offer_count(req), offers, events, order,
                                   (key[0], key[1], reply) if key else None)
        try:
            commit = self.deps.store.record(change, after=self._last)
        except EngineError:  # refused (queue full): the state we just changed was never stored
            self._replies.clear()
            self.deactivate()
            self.reset()  # reload on the next message, after the writes still in flight (activate)
            raise
        generation = self._generation
        pending = Pending(commit, reply)
        self._last = commit
        self._inflight += 1
        nearby = self._nearby or ()
        if key is not None:
            self._replies[key] = pending
            if len(self._replies) > REMEMBERED_REPLIES:
                del self._replies[next(iter(self._replies))]

        def _done(fut: asyncio.Future[None]) -> None:
            self._inflight -= 1
            if generation != self._generation:
                return  # from before a reload: its outcome is already accounted for
            if fut.cancelled() or fut.exception() is not None:
                self._forget()
                return
            if key is not None and self._replies.get(key) is pending:
                self._replies[key] = reply
            self.deps.publisher.publish(change, nearby)

        commit.add_done_callback(_done)
        return pending

    def _forget(self) -> None:
        """Drop memory that storage did not accept; the next message reloads from PostgreSQL."""
        self._generation += 1
        self._last = None
        self._replies.clear()
        self.deactivate()
        self.reset()

    def _watch(self, w: Watch) -> Any:
        req = self.req
        if req is None:
            raise EngineError("not_found", "no such meal request")
        if w.vendor_id is None and req.customer_id != w.user_id:
            raise EngineError("forbidden", "not your request")
        if w.vendor_id is not None and not (
            any(o.vendor_id == w.vendor_id for o in req.offers.values())
            or (req.status == n.OPEN and n.covers(w.vendor_lat, w.vendor_lng, w.vendor_km,
                                                   req.delivery_lat, req.delivery_lng))
        ):
            raise EngineError("forbidden", "this request is outside your service area")
        offers = [n.offer_view(o) for o in req.offers.values() if w.vendor_id in (None, o.vendor_id)]
        data = {"request": n.request_view(req), "offers": offers}
        if self._inflight == 0 or self._last is None:
            return data
        return Pending(self._last, data)  # answer once what the snapshot shows is committed

    async def _expire(self) -> Any:
        req = self.req
        if req is None or req.status != n.OPEN:
            return None
        if utcnow() < req.expires_at:
            self._arm()  # fired early (clock skew): try again at the deadline
            return None
        if self._nearby is None:  # every await comes before the rule changes anything
            self._nearby = await self.deps.vendors.vendors_covering(req.delivery_lat, req.delivery_lng)
        events = n.expire_request(req, utcnow())
        self.deactivate()
        return self._commit(events, None, None, None)
