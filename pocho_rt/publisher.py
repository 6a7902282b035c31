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
from typing import Any

import socketio

from adapters.geo import GeoIndex
from engine.negotiation import Event, MealRequest
from pocho_rt.sockets.server import emit_once

log = logging.getLogger("pocho.publisher")


def request_room(request_id: str) -> str:
    return f"request:{request_id}"


def vendor_room(vendor_id: str) -> str:
    return f"vendor:{vendor_id}"


class SocketPublisher:
    """Implements engine.ports.Publisher."""

    def __init__(self, sio: socketio.AsyncServer, geo: GeoIndex) -> None:
        self.sio = sio
        self.geo = geo
        self._queue: deque[tuple[str, float, float, list[Event], tuple[str, ...]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def publish(self, request: MealRequest, events: list[Event], nearby: tuple[str, ...]) -> None:
        if events:
            self._queue.append((request.id, request.delivery_lat, request.delivery_lng, events, nearby))
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Deliver what is queued (bounded wait), then stop."""
        if self._queue and self._task and not self._task.done():
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            request_id, lat, lng, events, nearby = self._queue.popleft()
            try:
                await self._deliver(request_id, lat, lng, events, nearby)
            except Exception:
                log.exception("event delivery failed", extra={"requestId": request_id})

    async def _deliver(self, request_id: str, lat: float, lng: float, events: list[Event],
                       nearby: tuple[str, ...]) -> None:
        for event in events:
            for audience, name in event.targets:
                if audience == "room":
                    await self._emit(name, event.payload, request_room(request_id), "/customer")
                elif audience == "nearby":
                    if nearby:
                        await self._emit(name, event.payload, [vendor_room(v) for v in nearby], "/vendor")
                else:
                    await self._emit(name, event.payload, vendor_room(audience.split(":", 1)[1]), "/vendor")
            if event.kind == "request:new":
                await self.geo.put_request(request_id, lat, lng)
            elif event.kind == "request:closed":
                await self.geo.remove_request(request_id)

    async def _emit(self, name: str, payload: dict[str, Any], to: str | list[str], namespace: str) -> None:
        await emit_once(self.sio, name, payload, to, namespace)
