"""The order service's edge: what namespaces and HTTP routes call to reach order actors.

(Issue 7, being built: this is the agreed interface; the order helper fills it in.)
"""

from __future__ import annotations

from typing import Any

import asyncpg
import socketio

from engine.assignment import RiderDirectory
from engine.runtime.actor import ActorSystem
from persistence.writer import Writer
from pocho_rt.config import Settings
from pocho_rt.tasks import Supervisor


class OrderService:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        sio: socketio.AsyncServer,
        writer: Writer,
        actors: ActorSystem,
        riders: RiderDirectory,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.sio = sio
        self.writer = writer
        self.actors = actors
        self.riders = riders

    async def start(self, supervisor: Supervisor) -> None:
        """Register the order actor kind's loops (publisher, deadline sweeper) with the supervisor."""

    async def stop(self) -> None:
        """After the writer's final flush: deliver what committed."""

    # /rider commands (called by pocho_rt/sockets/rider.py)

    async def accept_assignment(self, order_id: str, rider_id: str, user_id: str, client_msg_id: str | None) -> Any:
        raise NotImplementedError

    async def decline_assignment(self, order_id: str, rider_id: str, user_id: str, client_msg_id: str | None) -> Any:
        raise NotImplementedError

    async def rider_update(
        self,
        order_id: str,
        rider_id: str,
        status: str,
        delivery_code: str | None,
        user_id: str,
        client_msg_id: str | None,
    ) -> Any:
        raise NotImplementedError
