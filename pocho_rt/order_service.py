"""The order service's edge: what namespaces, HTTP routes and (later) payment webhooks call to
reach order actors, the publisher of committed order events, and the deadline sweeper.

Each command method asks one order actor; engine errors travel up unchanged. The one place
two actors take part is `accept_assignment`, sequenced here and never inside a turn (see
engine.assignment): ask the rider actor to `Reserve`, then the order actor to accept, and
`Release` the rider if the order refuses.

Where events go (after commit, in commit order, one task): `order:status` to the customer's
user room `user:<id>` on /customer (every device of the customer, watching or not; the
order room on /customer carries `rider:location` only), the vendor's room on /vendor and the
assigned rider's room on /rider; `assignment:offer` / `assignment:revoked` to one rider's
room on /rider. Vendor and rider frames share one encoding; the customer's adds the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import uuid
from collections import deque
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import socketio
from prometheus_client import Counter

from engine import orders as o
from engine.assignment import ORDER_KIND, RIDER_KIND, Release, Reserve
from engine.clock import utcnow
from engine.errors import EngineError
from engine.limits import DELIVERY_CODE_LENGTH, MAX_REPLAY_EVENTS
from engine.order_actor import Deps, Envelope, OrderActor, OrderChange, Tick, Watch
from engine.runtime.actor import ActorSystem
from engine.runtime.metrics import REGISTRY
from persistence import orders as orders_db
from persistence.shards import Fence
from persistence.writer import Writer
from pocho_rt.config import Settings
from pocho_rt.publisher import rider_room, vendor_room
from pocho_rt.rider_service import RiderService
from pocho_rt.sockets.server import emit_frame, event_frame
from pocho_rt.tasks import Supervisor, wake_or_sleep
from pocho_rt.views import ReplayItem, order_event_view

log = logging.getLogger("pocho.orders")

SLA_BREACHES = Counter("pocho_order_sla_breaches", "Order SLA breaches recorded, by kind", ["kind"], registry=REGISTRY)


def policy_of(settings: Settings) -> o.Policy:
    """The order rules' timings from the settings; the next rider search after finding nobody
    waits half an offer's lifetime."""
    return o.Policy(
        unpaid_cancel=timedelta(seconds=settings.order_unpaid_cancel_seconds),
        prep_start=timedelta(minutes=settings.sla_prep_start_minutes),
        ready_grace=timedelta(minutes=settings.sla_ready_grace_minutes),
        unassigned=timedelta(minutes=settings.sla_unassigned_minutes),
        delivery_margin=timedelta(minutes=settings.sla_delivery_margin_minutes),
        sla_scale=settings.order_sla_scale,
        offer_ttl=timedelta(seconds=settings.assignment_offer_seconds),
        dispatch_retry=timedelta(seconds=settings.assignment_offer_seconds / 2),
    )


def new_delivery_code() -> str:
    return f"{secrets.randbelow(10**DELIVERY_CODE_LENGTH):0{DELIVERY_CODE_LENGTH}d}"


class OrderPublisher:
    """Implements engine.order_actor.OrderPublisher: sockets and metrics, from one task."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        self._queue: deque[OrderChange] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._running = False

    def publish(self, change: OrderChange) -> None:
        if any(e.kind != o.TELL for e in change.events):
            self._queue.append(change)
            self._wake.set()

    async def stop(self) -> None:
        """Deliver what is queued (bounded wait); the supervisor then cancels `run`."""
        if self._queue and self._running:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)

    async def run(self) -> None:
        self._running = True
        try:
            while True:
                if not self._queue:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                change = self._queue.popleft()
                try:
                    await self._deliver(change)
                except Exception:
                    log.exception("order event delivery failed", extra={"orderId": change.order.id})
        finally:
            self._running = False

    async def _deliver(self, change: OrderChange) -> None:
        order = change.order
        for e in change.events:
            if e.kind == o.ORDER_STATUS:
                await self._status(order, e, (change.payload_json or {}).get(e.seq))
            elif e.kind in (o.ASSIGNMENT_OFFER, o.ASSIGNMENT_REVOKED):
                payload = orjson.dumps(e.payload).decode()
                for target in e.targets:
                    await self._emit(e.kind, payload, rider_room(target.split(":", 1)[1]), "/rider")
            elif e.kind == o.OPS:
                sla = e.payload.get("sla")
                if sla is not None:
                    SLA_BREACHES.labels(sla).inc()
                log.warning("order ops event", extra={"orderId": order.id, "kind": e.payload["kind"]})

    async def _status(self, order: o.Order, e: o.Event, encoded: str | None) -> None:
        shared = encoded or orjson.dumps(e.payload).decode()
        for audience in e.targets:
            if audience == o.CUSTOMER:
                mine = {**e.payload, "order": o.with_code(e.payload["order"], order.delivery_code)}
                await self._emit(o.ORDER_STATUS, orjson.dumps(mine).decode(), f"user:{order.customer_id}", "/customer")
            elif audience == o.VENDOR:
                await self._emit(o.ORDER_STATUS, shared, vendor_room(order.vendor_id), "/vendor")
            elif audience == o.RIDER and (rider := e.payload["order"]["riderId"]) is not None:
                await self._emit(o.ORDER_STATUS, shared, rider_room(rider), "/rider")

    async def _emit(self, name: str, payload: str, room: str, namespace: str) -> None:
        await emit_frame(self.sio, event_frame(name, payload, namespace), room, namespace)


class OrderService:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        sio: socketio.AsyncServer,
        writer: Writer,
        actors: ActorSystem,
        riders: RiderService,
        fence: Fence | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.sio = sio
        self.writer = writer
        self.actors = actors
        self.riders = riders
        self.policy = policy_of(settings)
        self.store = orders_db.OrderStore(pool, writer, fence)
        self.publisher = OrderPublisher(sio)
        self.sweep_now = asyncio.Event()  # set when this node takes shards: their deadlines are due here now
        deps = Deps(self.store, self.publisher, riders, self.policy, actors.tell)
        actors.register(ORDER_KIND, functools.partial(OrderActor, deps=deps))

    async def start(self, supervisor: Supervisor) -> None:
        """Register the order loops (publisher, deadline sweeper) with the supervisor."""
        supervisor.loop("order-publisher", self.publisher.run)
        supervisor.loop("order-deadlines", self._sweep_deadlines)

    async def stop(self) -> None:
        """After the writer's final flush: deliver what committed."""
        await self.publisher.stop()

    async def _sweep_deadlines(self) -> None:
        """Wake orders whose deadline passed while no actor held them (crash, passivation, or
        an unpaid order no actor has held yet)."""
        while True:
            try:
                for order_id in await self.store.due(utcnow() - self.policy.unpaid_cancel):
                    if self.actors.local(ORDER_KIND, order_id):  # other nodes sweep their own shards
                        self.actors.tell(ORDER_KIND, order_id, Tick())
            except Exception as exc:  # storage away: try again next round, the loop must not die
                log.warning("order deadline sweep failed", extra={"error": type(exc).__name__})
            await wake_or_sleep(self.sweep_now, self.settings.sweep_seconds)

    # ------------------------------------------------------------------ asking

    async def _ask(self, order_id: str, msg: Any) -> Any:
        try:
            uuid.UUID(order_id)
        except ValueError:
            raise EngineError("not_found", "no such order") from None
        try:
            return await self.actors.ask(ORDER_KIND, order_id, msg)
        except EngineError:
            actor = self.actors.get(ORDER_KIND, order_id)
            if isinstance(actor, OrderActor) and actor.order is None:
                self.actors.passivate(ORDER_KIND, order_id)  # no such order: keep no cell
            raise

    async def _command(self, order_id: str, cmd: Any, user_id: str, client_msg_id: str | None) -> Any:
        return await self._ask(order_id, Envelope(cmd, user_id, client_msg_id))

    # ------------------------------------------------------------------ payment (internal)

    async def confirm_payment(self, order_id: str, reference: str | None = None) -> Any:
        """A verified payment: PENDING_PAYMENT -> CONFIRMED with a fresh delivery code. Only
        internal callers (tests now, the payments webhooks later): no HTTP route reaches it."""
        return await self._ask(
            order_id, o.PaymentConfirmed(delivery_code=new_delivery_code(), now=utcnow(), reference=reference)
        )

    async def note_payment(self, order_id: str, payment_status: str, reference: str | None = None) -> Any:
        """The payments service's news about the order's money after the fact (paid after cancel,
        refunds): only `paymentStatus` changes, with an `order:status` event of kind `payment`."""
        return await self._ask(
            order_id, o.PaymentNoted(payment_status=payment_status, now=utcnow(), reference=reference)
        )

    # ------------------------------------------------------------------ /customer and /vendor

    async def cancel(self, order_id: str, customer_id: str, reason: str, client_msg_id: str | None) -> Any:
        cmd = o.CustomerCancel(customer_id=customer_id, reason=reason, now=utcnow())
        return await self._command(order_id, cmd, customer_id, client_msg_id)

    async def rate(
        self, order_id: str, customer_id: str, rating: int, comment: str | None, client_msg_id: str | None
    ) -> Any:
        cmd = o.Rate(customer_id=customer_id, rating=rating, comment=comment, now=utcnow())
        return await self._command(order_id, cmd, customer_id, client_msg_id)

    async def vendor_update(
        self,
        order_id: str,
        vendor_id: str,
        user_id: str,
        status: str,
        eta_minutes: int | None,
        reason: str | None,
        client_msg_id: str | None,
    ) -> Any:
        cmd = o.VendorUpdate(vendor_id=vendor_id, status=status, eta_minutes=eta_minutes, reason=reason, now=utcnow())
        return await self._command(order_id, cmd, user_id, client_msg_id)

    async def watch(self, order_id: str, audience: str, party_id: str, since_seq: int | None) -> dict[str, Any]:
        """{order, events (after `since_seq`, this audience's only), riderLocation}. The rider
        actor is asked after the order actor answered, outside any turn."""
        snapshot: dict[str, Any] = await self._ask(order_id, Watch(audience, party_id))
        view = snapshot["order"]
        events = [] if since_seq is None else await self.missed_events(order_id, since_seq, audience, view)
        rider_id = view.get("riderId")
        location = None if rider_id is None else await self.riders.last_location(rider_id, order_id)
        return {"order": view, "events": events, "riderLocation": location}

    async def missed_events(
        self, order_id: str, since_seq: int, audience: str, view: dict[str, Any]
    ) -> list[ReplayItem]:
        """Stored `order:status` events after `since_seq` that `audience` received, as
        {seq, event, data}; the customer's carry the delivery code like the live ones."""
        rows = await orders_db.events_since(self.pool, order_id, since_seq, MAX_REPLAY_EVENTS)
        customer, code = audience == o.CUSTOMER, view.get("deliveryCode")
        return [order_event_view(r, code=code, customer=customer) for r in rows if audience in r["audiences"]]

    # ------------------------------------------------------------------ /rider (pocho_rt/sockets/rider.py)

    async def accept_assignment(self, order_id: str, rider_id: str, user_id: str, client_msg_id: str | None) -> Any:
        """Reserve the rider, then let the order accept; release the rider if it refuses. On
        `timeout` the outcome is unknown, so the rider is kept: if the order did accept, its
        `Carrying` follows; the client repeats with its clientMsgId to learn which."""
        try:
            uuid.UUID(order_id)
        except ValueError:
            raise EngineError("not_found", "no such order") from None
        await self.actors.ask(RIDER_KIND, rider_id, Reserve(order_id))
        cmd = o.AcceptAssignment(rider_id=rider_id, rider_user_id=user_id, now=utcnow())
        try:
            return await self._command(order_id, cmd, user_id, client_msg_id)
        except EngineError as exc:
            if exc.code != "timeout":
                self.actors.tell(RIDER_KIND, rider_id, Release(order_id))
            raise

    async def decline_assignment(self, order_id: str, rider_id: str, user_id: str, client_msg_id: str | None) -> Any:
        cmd = o.DeclineAssignment(rider_id=rider_id, now=utcnow())
        return await self._command(order_id, cmd, user_id, client_msg_id)

    async def rider_update(
        self,
        order_id: str,
        rider_id: str,
        status: str,
        delivery_code: str | None,
        user_id: str,
        client_msg_id: str | None,
    ) -> Any:
        cmd = o.RiderUpdate(rider_id=rider_id, status=status, delivery_code=delivery_code, now=utcnow())
        return await self._command(order_id, cmd, user_id, client_msg_id)
