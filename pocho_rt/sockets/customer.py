"""The /customer namespace: post and negotiate meal requests, follow, cancel and rate orders
(PROTOCOL "/customer")."""

from __future__ import annotations

from typing import Any

from engine import negotiation as n
from engine.clock import utcnow
from engine.orders import CUSTOMER
from pocho_rt.errors import ok
from pocho_rt.publisher import order_room, request_room
from pocho_rt.sockets import schemas as s
from pocho_rt.sockets.base import BaseNamespace
from pocho_rt.validation import convert


class CustomerNamespace(BaseNamespace):
    role = "CUSTOMER"

    async def on_request_create(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.RequestCreate)
        request_id = self.negotiation.new_request_id(p.user_id, c.client_msg_id)
        await self.negotiation.check_open_quota(p.user_id, request_id)
        cmd = n.CreateRequest(
            request_id=request_id,
            customer_id=p.user_id,
            category=c.category,
            budget_min_kobo=c.budget_min_kobo,
            budget_max_kobo=c.budget_max_kobo,
            delivery_lat=c.delivery_lat,
            delivery_lng=c.delivery_lng,
            address_line=c.address_line,
            notes=c.notes,
            desired_at=c.desired_at,
            expires_in_minutes=c.expires_in_minutes,
            max_vendor_offers=c.max_vendor_offers,
            now=utcnow(),
            time_scale=self.svc.settings.expiry_scale,
        )
        reply = await self.negotiation.request(request_id, cmd, p.user_id, c.client_msg_id)
        await self.enter_room(sid, request_room(request_id))
        return ok(reply)

    async def on_request_cancel(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.RequestRef)
        cmd = n.CancelRequest(customer_id=p.user_id, now=utcnow())
        return ok(await self.negotiation.request(c.request_id, cmd, p.user_id, c.client_msg_id))

    async def on_request_watch(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.RequestWatch)
        snapshot = await self.svc.ai.ranked(await self.negotiation.watch(c.request_id, p.user_id), p.user_id)
        await self.enter_room(sid, request_room(c.request_id))
        events = await self.negotiation.missed_events(c.request_id, c.since_seq, "room")
        return ok({**snapshot, "events": events, "vendorsViewing": await self.negotiation.viewing(c.request_id)})

    async def on_offer_counter(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.OfferCounter)
        cmd = n.CounterOffer(
            customer_id=p.user_id, offer_id=c.offer_id, price_kobo=c.price_kobo, message=c.message, now=utcnow()
        )
        return ok(await self.negotiation.offer(c.offer_id, cmd, p.user_id, c.client_msg_id))

    async def on_offer_accept(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.OfferRef)
        cmd = n.AcceptOffer(
            customer_id=p.user_id, offer_id=c.offer_id, order_id=self.negotiation.new_id(), now=utcnow()
        )
        return ok(await self.negotiation.offer(c.offer_id, cmd, p.user_id, c.client_msg_id))

    async def on_offer_reject(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.OfferRef)
        cmd = n.RejectOffer(customer_id=p.user_id, offer_id=c.offer_id, now=utcnow())
        return ok(await self.negotiation.offer(c.offer_id, cmd, p.user_id, c.client_msg_id))

    # ---------------------------------------------------------------- orders

    async def on_order_watch(self, sid: str, data: Any) -> dict[str, Any]:
        """{order, events, riderLocation}; joins the order's room (`rider:location`)."""
        p = await self.principal(sid)
        c = convert(data, s.OrderWatch)
        reply = await self.svc.orders.watch(c.order_id, CUSTOMER, p.user_id, c.since_seq)
        await self.enter_room(sid, order_room(c.order_id))
        return ok(reply)

    async def on_order_cancel(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.OrderCancel)
        return ok(await self.svc.orders.cancel(c.order_id, p.user_id, c.reason, c.client_msg_id))

    async def on_order_rate(self, sid: str, data: Any) -> dict[str, Any]:
        p = await self.principal(sid)
        c = convert(data, s.OrderRate)
        return ok(await self.svc.orders.rate(c.order_id, p.user_id, c.rating, c.comment, c.client_msg_id))
