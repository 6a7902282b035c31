"""Delivers committed negotiation events to sockets, in commit order, from one task.

Audiences (engine.negotiation targets) map to Socket.IO rooms: "room" is the request's
customer room on /customer, "vendor:<id>" a vendor's room on /vendor, "nearby" the
vendors in range (a list of vendor rooms: the payload is encoded once for all). The
open-request geo index follows request:new / request:closed here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

import orjson
import socketio

from adapters.geo import GeoIndex
from engine.negotiation import MealRequest
from engine.ports import NegotiationChange
from pocho_rt.sockets.server import emit_frame, event_frame

log = logging.getLogger("pocho.publisher")


def request_room(request_id: str) -> str:
    return f"request:{request_id}"


def vendor_room(vendor_id: str) -> str:
    return f"vendor:{vendor_id}"


def order_room(order_id: str) -> str:
    """Sockets following an order (`order:watch`), in each namespace: `/customer` also gets
    `rider:location` there."""
    return f"order:{order_id}"


def rider_room(rider_id: str) -> str:
    """Every /rider socket of one rider profile: `assignment:offer`, `assignment:revoked`."""
    return f"rider:{rider_id}"


class SocketPublisher:
    """Implements engine.ports.Publisher."""

    def __init__(self, sio: socketio.AsyncServer, geo: GeoIndex) -> None:
        self.sio = sio
        self.geo = geo
        self._queue: deque[tuple[NegotiationChange, tuple[str, ...]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._running = False
        # Called (never awaited) after each delivered `request:new`: the auto-bidder's hook.
        self.request_listeners: list[Callable[[MealRequest, tuple[str, ...]], None]] = []

    def publish(self, change: NegotiationChange, nearby: tuple[str, ...]) -> None:
        if change.events:
            self._queue.append((change, nearby))
            self._wake.set()

    async def stop(self) -> None:
        """Deliver what is queued (bounded wait); the supervisor then cancels `run`."""
        if self._queue and self._running:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)

    async def run(self) -> None:
        """The delivery loop, owned by the process supervisor."""
        self._running = True
        try:
            await self._deliver_forever()
        finally:
            self._running = False

    async def _deliver_forever(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            change, nearby = self._queue.popleft()
            try:
                await self._deliver(change, nearby)
            except Exception:
                log.exception("event delivery failed", extra={"requestId": change.request.id})

    async def _deliver(self, change: NegotiationChange, nearby: tuple[str, ...]) -> None:
        req = change.request
        encoded = change.payload_json or [orjson.dumps(e.payload).decode() for e in change.events]
        for event, payload in zip(change.events, encoded, strict=True):
            for audience, name in event.targets:
                to: str | list[str]
                if audience == "room":
                    to, ns = request_room(req.id), "/customer"
                elif audience == "nearby":
                    if not nearby:
                        continue
                    to, ns = [vendor_room(v) for v in nearby], "/vendor"
                else:
                    to, ns = vendor_room(audience.split(":", 1)[1]), "/vendor"
                await emit_frame(self.sio, event_frame(name, payload, ns), to, ns)
            if event.kind == "request:new":
                await self.geo.put_request(req.id, req.delivery_lat, req.delivery_lng)
                for listener in self.request_listeners:
                    listener(req, nearby)
            elif event.kind == "request:closed":
                await self.geo.remove_request(req.id)
