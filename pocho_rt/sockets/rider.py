"""The /rider namespace of PROTOCOL: presence, location pings, assignments and deliveries.

A socket belongs to one rider profile (riders.id), looked up when it connects and joined to
`rider_room(rider_id)` (where `assignment:offer` and `assignment:revoked` arrive); a RIDER
user without a profile may connect but every command is `forbidden` until the profile
exists. `location` is the hot path: schema, validation and one ask of the rider actor, all
in memory. Disconnecting does not take a rider offline (networks are patchy and an app
reconnects): the heartbeat does, when pings stop.
"""

from __future__ import annotations

import time
from typing import Any

from engine import tracking
from engine.clock import utcnow
from engine.errors import EngineError
from pocho_rt.auth.tokens import Principal
from pocho_rt.errors import ApiError, ok
from pocho_rt.publisher import rider_room
from pocho_rt.rider_service import RiderService
from pocho_rt.sockets import schemas as s
from pocho_rt.sockets.base import BaseNamespace
from pocho_rt.validation import convert

PROFILE_RECHECK_SECONDS = 5.0  # a socket without a rider profile looks it up again at most this often


class RiderNamespace(BaseNamespace):
    role = "RIDER"

    @property
    def riders(self) -> RiderService:
        return self.svc.riders

    async def joined(self, sid: str, principal: Principal) -> None:
        rider_id = await self.riders.rider_of(principal.user_id)
        session = await self.get_session(sid)
        session["rider"] = rider_id
        session["rider_checked"] = time.monotonic()
        if rider_id is not None:
            await self.enter_room(sid, rider_room(rider_id))

    async def _rider(self, sid: str) -> tuple[str, Principal]:
        """(rider profile id, principal) of the caller; `forbidden` without a profile. A
        profile created after connecting is found (re-read at most every few seconds, so a
        flood of pings from a profile-less socket costs no query per ping)."""
        session = await self.get_session(sid)
        rider_id: str | None = session.get("rider")
        principal: Principal = session["principal"]
        if rider_id is None and time.monotonic() - session.get("rider_checked", 0.0) >= PROFILE_RECHECK_SECONDS:
            session["rider_checked"] = time.monotonic()
            rider_id = await self.riders.rider_of(principal.user_id)
            if rider_id is not None:
                session["rider"] = rider_id
                await self.enter_room(sid, rider_room(rider_id))
        if rider_id is None:
            raise ApiError("forbidden", "create your rider profile first")
        return rider_id, principal

    # ---------------------------------------------------------------- presence and pings

    async def on_rider_online(self, sid: str, data: Any) -> dict[str, Any]:
        rider_id, _ = await self._rider(sid)
        c = convert(data, s.RiderOnline)
        return ok(await self.riders.online(rider_id, c.lat, c.lng, utcnow()))

    async def on_rider_offline(self, sid: str, data: Any) -> dict[str, Any]:
        rider_id, _ = await self._rider(sid)
        convert({} if data is None else data, s.RiderOffline)
        return ok(await self.riders.offline(rider_id))

    async def on_location(self, sid: str, data: Any) -> dict[str, Any]:
        """High rate, ack optional: a bad ping is `invalid` and changes nothing; a flood is
        coalesced by the actor, not refused."""
        riders = self.riders
        riders.stats.received += 1
        rider_id, _ = await self._rider(sid)
        try:
            c = convert(data, s.RiderLocation)
            now = utcnow()
            fix = tracking.validate(c.lat, c.lng, c.recorded_at, now, c.heading, c.speed_kmh, c.accuracy_m)
        except EngineError:
            riders.stats.invalid += 1
            raise
        return ok(await riders.location(rider_id, fix, now))

    # ---------------------------------------------------------------- assignments and deliveries

    async def on_assignment_accept(self, sid: str, data: Any) -> dict[str, Any]:
        rider_id, p = await self._rider(sid)
        c = convert(data, s.RiderAssignment)
        return ok(await self.svc.orders.accept_assignment(c.order_id, rider_id, p.user_id, c.client_msg_id))

    async def on_assignment_decline(self, sid: str, data: Any) -> dict[str, Any]:
        rider_id, p = await self._rider(sid)
        c = convert(data, s.RiderAssignment)
        return ok(await self.svc.orders.decline_assignment(c.order_id, rider_id, p.user_id, c.client_msg_id))

    async def on_order_update(self, sid: str, data: Any) -> dict[str, Any]:
        rider_id, p = await self._rider(sid)
        c = convert(data, s.RiderOrderUpdate)
        if c.status == "DELIVERED" and c.delivery_code is None:
            raise ApiError("invalid", "invalid deliveryCode: required", {"deliveryCode": "required for DELIVERED"})
        return ok(
            await self.svc.orders.rider_update(
                c.order_id, rider_id, c.status, c.delivery_code, p.user_id, c.client_msg_id
            )
        )
