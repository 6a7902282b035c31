"""The actor that owns one order: the order rules (engine.order_rules) plus I/O around them.

Kind "order" (engine.assignment.ORDER_KIND), keyed by order id. It loads the order from
PostgreSQL on activation and re-arms its one timer at the order's next deadline (unpaid
cancel, SLA checks, the open assignment offer, the next rider search), so deadlines survive
a crash; the service's sweeper activates orders whose deadline passed while no actor held
them. A change goes to the write-behind writer; the reply, the broadcast and the messages to
rider actors (`tell`, never `ask`) wait for its commit, as in MealRequestActor.

Dispatch runs inside the timer's turn: when a search is due the actor queries the
`RiderDirectory` (Redis) radius by radius and offers the order to the nearest eligible rider.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from engine import dispatch
from engine import order_rules as rules
from engine import orders as o
from engine.assignment import ORDER_KIND, RIDER_KIND, Carrying, RiderCandidate, RiderDirectory, RiderUnavailable
from engine.clock import iso, utcnow
from engine.errors import DomainError, EngineError
from engine.limits import REMEMBERED_REPLIES
from engine.negotiation_views import OrderView
from engine.runtime.actor import Actor, Pending
from engine.runtime.write_chain import WriteChain

log = logging.getLogger("pocho.orders")

TICK_RETRY_SECONDS = 1.0  # after the writer refused a timer's change (queue full), try again this much later


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Envelope:
    """A client command with who sent it and its idempotency key."""

    cmd: Any
    user_id: str
    client_msg_id: str | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """The order as `audience` (customer, vendor, rider) sees it; `party_id` is the customer's
    user id, the vendor id or the rider id, checked against the order."""

    audience: str
    party_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Timer / sweeper: act on whatever deadline has passed."""


# ---------------------------------------------------------------- ports


@dataclass(slots=True)
class OrderChange:
    """What one turn changed, written in one group commit and published after it."""

    order: o.Order
    events: list[o.Event]
    due_at: datetime | None  # stored as sla_due_at for the sweeper
    reply: tuple[str, str, Any] | None = None  # (user id, clientMsgId, ack data)
    payload_json: dict[int, str] | None = None  # order:status payloads by seq, encoded once by the store


@dataclass(slots=True)
class LoadedOrder:
    order: o.Order
    replies: dict[tuple[str, str], Any]


class OrderStore(Protocol):
    def record(self, change: OrderChange, after: asyncio.Future[None] | None) -> asyncio.Future[None]:
        """Queue for group commit (raises EngineError `unavailable` when storage is behind)."""
        ...

    async def load(self, order_id: str, reply_limit: int) -> LoadedOrder | None: ...


class OrderPublisher(Protocol):
    def publish(self, change: OrderChange) -> None:
        """Deliver a committed change's events (sockets, metrics), in commit order."""
        ...


Tell = Callable[[str, str, Any], None]


@dataclass(frozen=True, slots=True)
class Deps:
    store: OrderStore
    publisher: OrderPublisher
    riders: RiderDirectory
    policy: o.Policy
    tell: Tell  # ActorSystem.tell: messages to rider actors


# command type -> rule
_RULES: dict[type, Callable[[o.Order, Any], tuple[o.Order, list[o.Event]]]] = {
    o.CustomerCancel: rules.cancel_by_customer,
    o.VendorUpdate: rules.vendor_update,
    o.RiderUpdate: rules.rider_update,
    o.AcceptAssignment: rules.accept_assignment,
    o.DeclineAssignment: rules.decline_assignment,
    o.Rate: rules.rate,
}


def _reply(cmd: Any, order: o.Order, events: list[o.Event]) -> dict[str, Any]:
    """The ack data of a command: the order as the caller sees it (the view its `order:status`
    event already holds, when it has one: built once per change)."""
    if isinstance(cmd, o.DeclineAssignment):
        return {"orderId": order.id}
    view = _view_of(order, events)
    if isinstance(cmd, o.CustomerCancel | o.Rate):
        return {"order": o.with_code(view, order.delivery_code)}
    return {"order": view}


def _view_of(order: o.Order, events: list[o.Event]) -> OrderView:
    for e in events:
        if e.kind == o.ORDER_STATUS and e.seq == order.seq:
            view: OrderView = e.payload["order"]
            return view
    return o.order_view(order)


class OrderActor(Actor):
    kind: ClassVar[str] = ORDER_KIND
    __slots__ = ("_armed", "_timer", "_writes", "deps", "order")

    def __init__(self, actor_id: str, deps: Deps) -> None:
        super().__init__(actor_id)
        self.deps = deps
        self.order: o.Order | None = None  # as of the last write the writer took
        self._writes = WriteChain(REMEMBERED_REPLIES)
        self._timer: asyncio.TimerHandle | None = None
        self._armed: datetime | None = None

    # ---------------------------------------------------------------- lifecycle

    async def activate(self) -> None:
        await self._writes.settle()  # a reload must see every write still in flight
        loaded = await self.deps.store.load(self.id, REMEMBERED_REPLIES)
        self.order = loaded.order if loaded else None
        self._writes.replies = loaded.replies if loaded else {}
        self._arm()
        order = self.order
        if order is not None and order.rider_id is not None and order.status not in o.TERMINAL:
            # After a restart (or passivation) the rider actor no longer knows what it carries:
            # tell it again, so its pings reach this order's customer (idempotent there).
            self._tell(order.rider_id, Carrying(order.id, order.delivery_lat, order.delivery_lng))

    def on_passivate(self) -> None:
        self._cancel_timer()

    def idle(self) -> bool:
        return self._writes.inflight == 0

    def snapshot(self) -> dict[str, Any]:
        order = self.order
        if order is None:
            return {"id": self.id, "exists": False}
        d = order.dispatch
        return {
            "order": o.order_view(order),
            "dispatch": {
                "offeredRiderId": d.offered_rider_id,
                "offerExpiresAt": iso(d.offer_expires_at),
                "skippedRiders": len(d.skipped),
                "nextSearchAt": iso(d.retry_at),
                "offersMade": d.offers_made,
            },
            "codeAttempts": order.code_attempts,
            "slaFired": sorted(order.sla_fired),
            "nextDeadline": iso(o.next_deadline(order, self.deps.policy)),
            "inflightWrites": self._writes.inflight,
        }

    # ---------------------------------------------------------------- timer

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = None

    def _arm(self, at: datetime | None = None, *, known: bool = False) -> None:
        """One timer, at the order's next deadline (kept when the deadline did not move);
        `known`: `at` is that deadline, already computed."""
        if not known:
            at = None if self.order is None else o.next_deadline(self.order, self.deps.policy)
        if at == self._armed and (at is None or self._timer is not None):
            return
        self._cancel_timer()
        if at is not None:
            self._timer = self.schedule((at - utcnow()).total_seconds(), Tick())
            self._armed = at

    # ---------------------------------------------------------------- messages

    async def handle(self, msg: Any) -> Any:
        if isinstance(msg, Envelope):
            return self._command(msg)
        if isinstance(msg, Watch):
            return self._watch(msg)
        if isinstance(msg, Tick):
            return await self._tick()
        if isinstance(msg, o.PaymentConfirmed):
            order = self._existing()
            new, events = rules.confirm_payment(order, msg)
            return self._commit(new, events, None, {"order": _view_of(new, events)})
        if isinstance(msg, o.PaymentNoted):
            order = self._existing()
            new, events = rules.note_payment(order, msg)
            reply = {"order": _view_of(new, events)}
            return self._writes.when_committed(reply) if new is order else self._commit(new, events, None, reply)
        if isinstance(msg, RiderUnavailable):
            order = self._existing()
            new, events = rules.rider_unavailable(order, msg.rider_id, utcnow())
            return None if new is order else self._commit(new, events, None, None)
        raise EngineError("invalid", f"unknown message {type(msg).__name__}")

    def _existing(self) -> o.Order:
        if self.order is None:
            raise EngineError("not_found", "no such order")
        return self.order

    def _command(self, env: Envelope) -> Any:
        key = (env.user_id, env.client_msg_id) if env.client_msg_id else None
        if key is not None and key in self._writes.replies:
            return self._writes.replies[key]
        order = self._existing()
        rule = _RULES.get(type(env.cmd))
        if rule is None:
            raise EngineError("invalid", f"unknown command {type(env.cmd).__name__}")
        try:
            new, events = rule(order, env.cmd)
        except rules.CodeRejected as exc:
            return self._refused(exc)
        reply = _reply(env.cmd, new, events)
        if new is order:  # nothing to write (a retried accept): answer once what it shows is committed
            return self._writes.when_committed(reply)
        return self._commit(new, events, key, reply)

    def _watch(self, w: Watch) -> Any:
        order = self._existing()
        party = {o.CUSTOMER: order.customer_id, o.VENDOR: order.vendor_id, o.RIDER: order.rider_id}.get(w.audience)
        if party is None or party != w.party_id:
            raise EngineError("forbidden", "not your order")
        data = {"order": o.customer_view(order) if w.audience == o.CUSTOMER else o.order_view(order)}
        return self._writes.when_committed(data)

    async def _tick(self) -> Any:
        self._cancel_timer()  # this tick is the timer's (or the sweeper's): every path below re-arms
        order = self.order
        if order is None:
            return None
        now = utcnow()
        new, events = rules.due(order, now, self.deps.policy)
        if new.status in o.NEEDS_RIDER and new.rider_id is None and dispatch.search_due(new.dispatch, now):
            new, offered = rules.offer_next(new, await self._search(new), now, self.deps.policy)
            events += offered
        if new is order:  # early (clock skew) or nothing left: wait for the next deadline, never spin
            at = o.next_deadline(order, self.deps.policy)
            self._arm(at if at is None or at > now else now + timedelta(seconds=TICK_RETRY_SECONDS), known=True)
            return None
        try:
            return self._commit(new, events, None, None)
        except EngineError:  # refused: unchanged in memory; try again soon rather than wait for the sweeper
            self._cancel_timer()
            self._timer = self.schedule(TICK_RETRY_SECONDS, Tick())
            raise

    async def _search(self, order: o.Order) -> list[RiderCandidate]:
        """Candidates of the smallest radius that has an eligible rider (none: an empty list)."""
        d = order.dispatch
        try:
            for km in dispatch.RADII_KM:
                found = await self.deps.riders.available_near(
                    order.pickup_lat, order.pickup_lng, km, dispatch.search_limit(d)
                )
                if dispatch.pick(found, d) is not None:
                    return found
        except Exception as exc:  # the index is away: plan the next search like an empty one
            log.warning("rider search failed", extra={"orderId": order.id, "error": type(exc).__name__})
        return []

    # ---------------------------------------------------------------- writes

    def _commit(self, new: o.Order, events: list[o.Event], key: tuple[str, str] | None, reply: Any) -> Pending:
        """Hand the change to the writer and keep `new`; reply, publish and tell rider actors
        once committed. Refused (EngineError): nothing changed. Failed after the writer took
        it: forget memory and reload on the next message (MealRequestActor._commit)."""
        due_at = o.next_deadline(new, self.deps.policy)
        change = OrderChange(new, events, due_at, (key[0], key[1], reply) if key else None)
        commit = self.deps.store.record(change, after=self._writes.last)
        self.order = new
        pending = self._writes.track(commit, key, reply, lambda: self._committed(change), self._forget)
        self._arm(due_at, known=True)
        return pending

    def _committed(self, change: OrderChange) -> None:
        self.deps.publisher.publish(change)
        for e in change.events:
            if e.kind == o.TELL:
                self._tell(e.payload["riderId"], e.payload["message"])

    def _tell(self, rider_id: str, message: Any) -> None:
        try:
            self.deps.tell(RIDER_KIND, rider_id, message)
        except Exception:  # no rider actor kind on this node: dispatch still works by sockets
            log.exception("could not tell the rider actor", extra={"riderId": rider_id})

    def _refused(self, exc: rules.CodeRejected) -> Pending:
        """A wrong delivery code: store the counted attempt, then answer `forbidden`."""
        committed = self._commit(exc.order, exc.events, None, None).commit
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if the asker left

        def _after(fut: asyncio.Future[None]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                answer.set_exception(EngineError("unavailable", "storage failed, retry"))
            else:
                answer.set_exception(DomainError(exc.code, exc.message))

        committed.add_done_callback(_after)
        return Pending(answer, None)

    def _forget(self) -> None:
        """Drop memory that storage did not accept; the next message reloads from PostgreSQL."""
        self._writes.forget()
        self._cancel_timer()
        self.reset()
