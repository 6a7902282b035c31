"""Actors of an end-to-end negotiation: real accounts, real sockets, awaited events."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import socketio

from tests.helpers import Client

LAGOS = (6.5244, 3.3792)


@dataclass
class Party:
    """One connected user: its socket, token and every event it received, awaitable."""

    client: Client
    namespace: str
    user: dict[str, Any]
    token: str
    sio: socketio.AsyncClient
    vendor_id: str | None = None
    events: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    _waiters: dict[str, list[asyncio.Future[Any]]] = field(default_factory=lambda: defaultdict(list))

    def listen(self, *names: str) -> None:
        for name in names:

            def _on(data: Any, name: str = name) -> None:
                self.events[name].append(data)
                for fut in self._waiters.pop(name, []):
                    if not fut.done():
                        fut.set_result(data)

            self.sio.on(name, _on, namespace=self.namespace)

    def next(self, name: str, timeout: float = 10.0) -> asyncio.Task[Any]:
        """The next `name` event received from this call on (not from when the result is awaited:
        start waiting, then cause the event, then await)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[name].append(fut)
        return asyncio.ensure_future(asyncio.wait_for(fut, timeout))

    async def nth(self, name: str, count: int, timeout: float = 10.0) -> list[Any]:  # noqa: ASYNC109
        """Wait until `count` `name` events have arrived in total."""
        while len(self.events[name]) < count:
            await self.next(name, timeout)
        return self.events[name]

    async def call(self, event: str, data: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        reply: dict[str, Any] = await self.sio.call(event, data, namespace=self.namespace, timeout=timeout)
        return reply

    async def ok(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        reply = await self.call(event, data)
        assert reply["ok"] is True, reply
        return dict(reply["data"])

    async def err(self, event: str, data: dict[str, Any]) -> str:
        reply = await self.call(event, data)
        assert reply["ok"] is False, reply
        return str(reply["error"]["code"])


CUSTOMER_EVENTS = ("offer:new", "offer:updated", "offer:withdrawn", "request:expired", "request:closed", "presence")
VENDOR_EVENTS = (
    "request:new",
    "request:closed",
    "offer:countered",
    "offer:accepted",
    "offer:rejected",
    "offer:expired",
    "offer:updated",
)


async def customer(client: Client, serializer: str = "default") -> Party:
    reg = await client.register("CUSTOMER")
    token = reg["tokens"]["accessToken"]
    sio = await client.connect("/customer", token, serializer=serializer)
    p = Party(client, "/customer", reg["user"], token, sio)
    p.listen(*CUSTOMER_EVENTS)
    return p


async def vendor(
    client: Client,
    db: Any,
    *,
    lat: float = LAGOS[0],
    lng: float = LAGOS[1],
    km: float = 10.0,
    verified: bool = True,
    name: str | None = None,
    serializer: str = "default",
) -> Party:
    reg = await client.register("VENDOR")
    vendor_id = uuid.uuid4()
    await db.execute(
        """INSERT INTO vendors (id, user_id, display_name, lat, lng, km_service_area, categories, verified)
           VALUES ($1, $2, $3, $4, $5, $6, '{}', $7)""",
        vendor_id,
        uuid.UUID(reg["user"]["id"]),
        name or f"Vendor {str(vendor_id)[:6]}",
        lat,
        lng,
        km,
        verified,
    )
    await client.server.svc.negotiation.vendor_changed(str(vendor_id))
    token = reg["tokens"]["accessToken"]
    sio = await client.connect("/vendor", token, serializer=serializer)
    p = Party(client, "/vendor", reg["user"], token, sio, vendor_id=str(vendor_id))
    p.listen(*VENDOR_EVENTS)
    return p


def request_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "category": "nigerian",
        "budgetMinKobo": 200_000,
        "budgetMaxKobo": 500_000,
        "deliveryLat": LAGOS[0],
        "deliveryLng": LAGOS[1],
        "addressLine": "12 Awolowo Rd, Ikoyi",
        **overrides,
    }


# ---------------------------------------------------------------- orders (issue 7)

ORDER_EVENTS = ("order:status",)
RIDER_EVENTS = ("assignment:offer", "assignment:revoked", "order:status")


async def rider(client: Client, *, lat: float = LAGOS[0], lng: float = LAGOS[1], online: bool = True) -> Party:
    """A RIDER with a profile, connected to /rider (and online at lat/lng). Its riders.id is
    `rider_id(party)`."""
    reg = await client.register("RIDER")
    token = reg["tokens"]["accessToken"]
    status, body = await client.call("POST", "/api/v1/riders", {"vehicleType": "motorcycle"}, token=token)
    assert status == 201, body
    sio = await client.connect("/rider", token)
    p = Party(client, "/rider", reg["user"], token, sio)
    p.rider_id = body["id"]  # the riders.id, read with `rider_id(p)`
    p.listen(*RIDER_EVENTS)
    if online:
        await p.ok("rider:online", {"lat": lat, "lng": lng})
    return p


def rider_id(p: Party) -> str:
    value: str = p.rider_id
    return value


async def accepted_order(cust: Party, vend: Party, prep_minutes: int | None = None, **request: Any) -> dict[str, Any]:
    """Negotiate one order: the customer posts, `vend` bids, the customer accepts; the order
    (PENDING_PAYMENT). Both parties listen to `order:status` from here on."""
    req = (await cust.ok("request:create", request_payload(**request)))["request"]
    bid: dict[str, Any] = {"requestId": req["id"], "priceKobo": 300_000}
    if prep_minutes is not None:
        bid["prepMinutes"] = prep_minutes
    offer = (await vend.ok("offer:place", bid))["offer"]
    order: dict[str, Any] = (await cust.ok("offer:accept", {"offerId": offer["id"]}))["order"]
    for p in (cust, vend):
        p.listen(*ORDER_EVENTS)  # registering again replaces the handler
    return order


async def reconnect(p: Party) -> Party:
    """A new socket of the same user in the same namespace (a phone back online)."""
    sio = await p.client.connect(p.namespace, p.token)
    again = Party(p.client, p.namespace, p.user, p.token, sio, vendor_id=p.vendor_id)
    again.listen(*p.sio.handlers.get(p.namespace, {}))  # the same events as before
    return again
