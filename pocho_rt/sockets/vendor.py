"""The /vendor namespace: nearby requests, bids, answers to counters, and running orders
(PROTOCOL "/vendor").

Only vendors verified by an admin may see requests and bid; the vendor profile is read
once per connection and re-read while it is still unverified, so a vendor verified
mid-session need not reconnect.
"""

from __future__ import annotations

from typing import Any

from engine import negotiation as n
from engine.clock import utcnow
from engine.limits import MAX_WATCHED_PER_SOCKET
from engine.orders import VENDOR
from pocho_rt.auth.tokens import Principal
from pocho_rt.context import Services
from pocho_rt.errors import ApiError, ok
from pocho_rt.negotiation_service import VendorProfile
from pocho_rt.publisher import vendor_room
from pocho_rt.sockets import schemas as s
from pocho_rt.sockets.base import BaseNamespace
from pocho_rt.validation import convert


class VendorNamespace(BaseNamespace):
    role = "VENDOR"

    def __init__(self, namespace: str, svc: Services) -> None:
        super().__init__(namespace, svc)
        # Each socket's verified profile as last read (a plain dict: the hot commands look it
        # up without the awaits of the Socket.IO session); unverified profiles are re-read.
        self._verified: dict[str, VendorProfile] = {}

    async def joined(self, sid: str, principal: Principal) -> None:
        profile = await self.negotiation.vendor_profile(principal.user_id)
        session = await self.get_session(sid)
        session["vendor"] = profile
        self._keep(sid, profile)
        if profile is not None:
            await self.enter_room(sid, vendor_room(profile.id))

    def _keep(self, sid: str, profile: VendorProfile | None) -> None:
        # a socket that disconnected while its profile was read is not kept (on_disconnect ran)
        if profile is not None and profile.verified and self.server.manager.is_connected(sid, self.namespace):
            self._verified[sid] = profile
        else:
            self._verified.pop(sid, None)

    async def _vendor(self, sid: str, *, fresh: bool = False) -> VendorProfile:
        """The caller's vendor profile; `fresh` re-reads it (location, radius, verification
        may have changed) for commands that depend on them, not for the hot revise path."""
        if not fresh and (known := self._verified.get(sid)) is not None:
            return known
        session = await self.get_session(sid)
        profile: VendorProfile | None = session.get("vendor")
        if fresh or profile is None or not profile.verified:
            profile = await self.negotiation.vendor_profile(session["principal"].user_id)
            if profile is not None and session.get("vendor") is None:
                await self.enter_room(sid, vendor_room(profile.id))
            session["vendor"] = profile
            self._keep(sid, profile)
        if profile is None:
            raise ApiError("forbidden", "create your vendor profile first")
        if not profile.verified:
            raise ApiError("forbidden", "your vendor profile is not verified yet")
        return profile

    async def on_requests_nearby(self, sid: str, data: Any) -> dict[str, Any]:
        v = await self._vendor(sid, fresh=True)
        return ok({"requests": await self.negotiation.requests_near(v)})

    async def on_request_watch(self, sid: str, data: Any) -> dict[str, Any]:
        """Open a request's details: its state and my offers; counts me in its `presence`."""
        v = await self._vendor(sid, fresh=True)
        c = convert(data, s.RequestId)
        presence = self.negotiation.presence
        if presence.watching(sid) >= MAX_WATCHED_PER_SOCKET:
            raise ApiError("limit_reached", f"watch at most {MAX_WATCHED_PER_SOCKET} requests at once")
        snapshot = await self.negotiation.watch(c.request_id, v.user_id, v)
        if not self.server.manager.is_connected(sid, self.namespace):
            return ok(snapshot)  # disconnected while we waited: do not count a ghost
        if presence.join(sid, c.request_id, v.id):
            await self.negotiation.presence_changed(c.request_id)
        return ok(snapshot)

    async def on_request_unwatch(self, sid: str, data: Any) -> dict[str, Any]:
        c = convert(data, s.RequestId)
        if self.negotiation.presence.leave(sid, c.request_id):
            await self.negotiation.presence_changed(c.request_id)
        return ok({})

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._verified.pop(sid, None)
        await super().on_disconnect(sid, reason)
        for request_id in self.negotiation.presence.leave_all(sid):
            await self.negotiation.presence_changed(request_id)

    async def on_offer_place(self, sid: str, data: Any) -> dict[str, Any]:
        v = await self._vendor(sid, fresh=True)
        c = convert(data, s.OfferPlace)
        cmd = n.PlaceOffer(
            offer_id=self.negotiation.new_id(),
            vendor_id=v.id,
            vendor_name=v.name,
            vendor_verified=v.verified,
            vendor_lat=v.lat,
            vendor_lng=v.lng,
            vendor_km=v.km,
            price_kobo=c.price_kobo,
            details=c.details,
            prep_minutes=c.prep_minutes,
            slot_from=c.slot_from,
            slot_to=c.slot_to,
            now=utcnow(),
        )
        return ok(await self.negotiation.place_offer(c.request_id, cmd, v.user_id, c.client_msg_id))

    async def on_offer_revise(self, sid: str, data: Any) -> dict[str, Any]:
        v = self._verified.get(sid) or await self._vendor(sid)  # the hot path: no await when known
        c = convert(data, s.OfferRevise)
        cmd = n.ReviseOffer(
            offer_id=c.offer_id,
            vendor_id=v.id,
            price_kobo=c.price_kobo,
            details=c.details,
            prep_minutes=c.prep_minutes,
            now=utcnow(),
        )
        return ok(await self.negotiation.offer(c.offer_id, cmd, v.user_id, c.client_msg_id))

    async def on_offer_withdraw(self, sid: str, data: Any) -> dict[str, Any]:
        v = await self._vendor(sid)
        c = convert(data, s.OfferRef)
        cmd = n.WithdrawOffer(vendor_id=v.id, offer_id=c.offer_id, now=utcnow())
        return ok(await self.negotiation.offer(c.offer_id, cmd, v.user_id, c.client_msg_id))

    async def on_counter_accept(self, sid: str, data: Any) -> dict[str, Any]:
        v = await self._vendor(sid)
        c = convert(data, s.OfferRef)
        cmd = n.AcceptCounter(vendor_id=v.id, offer_id=c.offer_id, now=utcnow())
        return ok(await self.negotiation.offer(c.offer_id, cmd, v.user_id, c.client_msg_id))

    # ---------------------------------------------------------------- orders

    async def on_order_update(self, sid: str, data: Any) -> dict[str, Any]:
        v = await self._vendor(sid)
        c = convert(data, s.VendorOrderUpdate)
        reply = await self.svc.orders.vendor_update(
            c.order_id, v.id, v.user_id, c.status, c.eta_minutes, c.reason, c.client_msg_id
        )
        return ok(reply)

    async def on_order_watch(self, sid: str, data: Any) -> dict[str, Any]:
        """As for customers; the vendor hears `order:status` in its own room already."""
        v = await self._vendor(sid)
        c = convert(data, s.OrderWatch)
        return ok(await self.svc.orders.watch(c.order_id, VENDOR, v.id, c.since_seq))
