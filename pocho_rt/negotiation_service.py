"""The negotiation service's edge: what the /customer and /vendor namespaces and the HTTP
routes call to reach meal-request actors, plus the few lookups they need (which request an
offer belongs to, a vendor's profile, open requests near a vendor).

Each command method asks one actor; engine errors travel up unchanged and the socket or
HTTP layer renders them (`pocho_rt.errors.api_error`). SQL lives in `persistence/`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import socketio

from adapters.geo import GeoIndex
from engine import negotiation as n
from engine.clock import utcnow
from engine.errors import EngineError
from engine.limits import MAX_OPEN_REQUESTS, MAX_REPLAY_EVENTS
from engine.meal_request_actor import Deps, Envelope, Expire, MealRequestActor, Watch
from engine.negotiation_views import RequestView
from engine.runtime.actor import ActorSystem
from persistence import catalogue as catalogue_db
from persistence import negotiation as negotiation_db
from persistence.pii import PiiCodec
from persistence.shards import Fence
from persistence.writer import Writer
from pocho_rt.config import Settings
from pocho_rt.presence import Presence, PresenceBoard
from pocho_rt.publisher import SocketPublisher, request_room
from pocho_rt.sockets.server import emit_frame, event_frame
from pocho_rt.tasks import Supervisor, wake_or_sleep
from pocho_rt.views import ReplayItem, request_row_view

log = logging.getLogger("pocho.negotiation")
_REQUEST_NS = uuid.UUID("6f1d3c0e-8a51-4f4e-9d0c-2b7f0a1c5e11")
_OFFER_INDEX_MAX = 200_000  # offer id -> request id cache entries


@dataclass(frozen=True, slots=True)
class VendorProfile:
    id: str
    user_id: str
    name: str
    lat: float
    lng: float
    km: float
    verified: bool


class NegotiationService:
    """Meal-request actors (on the node's actor system and writer), their publisher and
    deadline sweeper."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        sio: socketio.AsyncServer,
        writer: Writer,
        actors: ActorSystem,
        geo: GeoIndex,
        pii: PiiCodec,
        fence: Fence | None = None,
        board: PresenceBoard | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.store = negotiation_db.NegotiationStore(pool, writer, fence, pii=pii)
        self.geo = geo
        self.publisher = SocketPublisher(sio, geo)
        self.actors = actors
        deps = Deps(self.store, self.publisher, geo)
        actors.register(MealRequestActor.kind, functools.partial(MealRequestActor, deps=deps))
        self.presence = Presence()
        self.board = board  # counts viewers on every node; None: this node's alone
        self.sweep_now = asyncio.Event()  # set when this node takes shards: their deadlines are due here now
        self._offer_request: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, supervisor: Supervisor) -> None:
        """Index verified vendors, then hand this service's loops to the node's supervisor."""
        count = await self.geo.sync_vendors(self.pool)
        if self.board is not None:
            await self.board.reset()  # viewers a previous process under this node id left behind
        log.info("negotiation started", extra={"verifiedVendors": count})
        supervisor.loop("negotiation-publisher", self.publisher.run)
        supervisor.loop("request-deadlines", self._sweep_deadlines)

    async def stop(self) -> None:
        """Deliver the events of committed writes (after the writer's final flush)."""
        await self.publisher.stop()

    async def _sweep_deadlines(self) -> None:
        """Expire requests whose deadline passed while no actor held them (crash, passivation)."""
        while True:
            try:
                for request_id in await self.store.due_for_expiry():
                    if self.actors.local(MealRequestActor.kind, request_id):  # others sweep their own
                        self.actors.tell(MealRequestActor.kind, request_id, Expire())
            except Exception as exc:  # storage away: try again next round, the loop must not die
                log.warning("deadline sweep failed", extra={"error": type(exc).__name__})
            await wake_or_sleep(self.sweep_now, self.settings.sweep_seconds)

    # ------------------------------------------------------------------ ids

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def new_request_id(user_id: str, client_msg_id: str | None) -> str:
        """A retried request:create with the same clientMsgId lands on the same request."""
        if client_msg_id is None:
            return str(uuid.uuid4())
        return str(uuid.uuid5(_REQUEST_NS, f"{user_id}:{client_msg_id}"))

    # ------------------------------------------------------------------ commands

    async def _ask(self, request_id: str, msg: Any, *, known: bool = False) -> Any:
        """`known`: the id came from our own offer index or PostgreSQL, so it is a uuid."""
        if not known:
            try:
                uuid.UUID(request_id)
            except ValueError:
                raise EngineError("not_found", "no such meal request") from None
        try:
            return await self.actors.ask(MealRequestActor.kind, request_id, msg)
        except EngineError:
            actor = self.actors.get(MealRequestActor.kind, request_id)
            if isinstance(actor, MealRequestActor) and actor.req is None:
                self.actors.passivate(MealRequestActor.kind, request_id)  # no such request: keep no cell
            raise

    async def request(self, request_id: str, cmd: Any, user_id: str, client_msg_id: str | None) -> Any:
        return await self._ask(request_id, Envelope(cmd, user_id, client_msg_id))

    async def check_open_quota(self, customer_id: str, request_id: str) -> None:
        """At most MAX_OPEN_REQUESTS open requests per customer (this one not counted)."""
        if await negotiation_db.count_open_requests(self.pool, customer_id, request_id) >= MAX_OPEN_REQUESTS:
            raise EngineError("limit_reached", f"at most {MAX_OPEN_REQUESTS} open requests at a time")

    async def place_offer(self, request_id: str, cmd: n.PlaceOffer, user_id: str, client_msg_id: str | None) -> Any:
        reply = await self._ask(request_id, Envelope(cmd, user_id, client_msg_id))
        self._remember_offer(reply["offer"]["id"], request_id)
        return reply

    def offer(self, offer_id: str, cmd: Any, user_id: str, client_msg_id: str | None) -> Awaitable[Any]:
        """Ask the offer's request actor. Not a coroutine itself: the common case (the offer in
        our own index) goes straight to the ask, one coroutine frame less per command."""
        request_id = self._offer_request.get(offer_id)
        if request_id is None:
            return self._offer_unindexed(offer_id, Envelope(cmd, user_id, client_msg_id))
        return self._ask(request_id, Envelope(cmd, user_id, client_msg_id), known=True)

    async def _offer_unindexed(self, offer_id: str, env: Envelope) -> Any:
        request_id = await self._request_of(offer_id)
        return await self._ask(request_id, env, known=True)

    async def watch(self, request_id: str, user_id: str, vendor: VendorProfile | None = None) -> dict[str, Any]:
        msg = (
            Watch(user_id)
            if vendor is None
            else Watch(user_id, vendor.id, vendor.lat, vendor.lng, vendor.km, vendor_verified=vendor.verified)
        )
        result: dict[str, Any] = await self._ask(request_id, msg)
        return result

    async def missed_events(self, request_id: str, since_seq: int | None, audience: str) -> list[ReplayItem]:
        """Events after `since_seq` meant for `audience`, as {seq, event, data}."""
        if since_seq is None:
            return []
        out: list[ReplayItem] = []
        for row in await self.store.events_since(request_id, since_seq, MAX_REPLAY_EVENTS):
            for aud, name in row["targets"]:
                if aud == audience:
                    out.append({"seq": row["seq"], "event": name, "data": row["payload"]})
        return out

    async def presence_changed(self, request_id: str) -> None:
        """Tell the request's customer (on any node) how many vendors are viewing it now."""
        vendors = self.presence.vendors(request_id)
        count = len(vendors) if self.board is None else await self.board.publish(request_id, vendors)
        payload = orjson.dumps({"requestId": request_id, "vendorsViewing": count}).decode()
        room = request_room(request_id)
        await emit_frame(self.publisher.sio, event_frame("presence", payload, "/customer"), room, "/customer")

    async def viewing(self, request_id: str) -> int:
        """Distinct vendors viewing the request now, on every node."""
        vendors = self.presence.vendors(request_id)
        return len(vendors) if self.board is None else await self.board.count(request_id, vendors)

    # ------------------------------------------------------------------ lookups

    def _remember_offer(self, offer_id: str, request_id: str) -> None:
        if len(self._offer_request) >= _OFFER_INDEX_MAX:
            del self._offer_request[next(iter(self._offer_request))]
        self._offer_request[offer_id] = request_id

    async def _request_of(self, offer_id: str) -> str:
        request_id = self._offer_request.get(offer_id)
        if request_id is None:
            request_id = await negotiation_db.request_id_of_offer(self.pool, offer_id)
            if request_id is None:
                raise EngineError("not_found", "no such offer")
            self._remember_offer(offer_id, request_id)
        return request_id

    async def vendor_profile(self, user_id: str) -> VendorProfile | None:
        row = await catalogue_db.vendor_by_user(self.pool, user_id)
        if row is None:
            return None
        return VendorProfile(
            str(row["id"]),
            user_id,
            row["display_name"],
            row["lat"],
            row["lng"],
            row["km_service_area"],
            row["verified"],
        )

    async def requests_near(self, vendor: VendorProfile) -> list[RequestView]:
        """Open requests whose delivery point lies within this vendor's service area."""
        ids = await self.geo.requests_near(vendor.lat, vendor.lng, vendor.km)
        if not ids:
            return []
        return [request_row_view(r) for r in await negotiation_db.open_requests_by_ids(self.pool, self.store.pii, ids)]

    async def vendor_disabled(self, user_id: str) -> int:
        """An account disabled by ops (or erased): stop matching its vendor, so it gets no more
        `request:new`, and withdraw its live offers through their actors (customers see
        `offer:withdrawn`). Returns how many offers were withdrawn."""
        profile = await self.vendor_profile(user_id)
        if profile is None:
            return 0
        await self.geo.remove_vendor(profile.id)
        withdrawn = 0
        for offer_id, request_id in await negotiation_db.live_offers_of_vendor(self.pool, profile.id):
            cmd = n.WithdrawOffer(vendor_id=profile.id, offer_id=offer_id, now=utcnow())
            try:
                await self._ask(request_id, Envelope(cmd, user_id, None))
                withdrawn += 1
            except EngineError as exc:  # closed meanwhile, or the actor is away: nothing more to do here
                log.warning("withdrawing a disabled vendor's offer failed", extra={"code": exc.code})
        return withdrawn

    async def vendor_changed(self, vendor_id: str) -> None:
        """Catalogue and admin call this after commit: keep the geo index in step with a vendor."""
        row = await catalogue_db.vendor_geo(self.pool, vendor_id)
        if row is None or not row["verified"]:
            await self.geo.remove_vendor(vendor_id)
        else:
            await self.geo.put_vendor(vendor_id, row["lat"], row["lng"], row["km_service_area"])
