"""The long-lived services of one server process, built once in `pocho_rt.app.open_services`.

Every service is a typed field: handlers take what they need from here, nothing is
looked up by string key and nothing is optional that is always present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from adapters.geo import GeoIndex
from engine.ports import SearchIndex
from engine.runtime.actor import ActorSystem
from persistence.outbox import OutboxWorker
from persistence.pii import PiiCodec
from persistence.writer import Writer
from pocho_rt.auth.tokens import TokenService
from pocho_rt.config import Settings
from pocho_rt.sockets.server import GuardedServer
from pocho_rt.tasks import Supervisor

if TYPE_CHECKING:
    from pocho_rt.ai_service import AiServices
    from pocho_rt.analytics_service import AnalyticsService
    from pocho_rt.auth.sessions import SessionEnder
    from pocho_rt.cluster_runtime import ClusterRuntime
    from pocho_rt.negotiation_service import NegotiationService
    from pocho_rt.notify_service import NotifyService
    from pocho_rt.order_service import OrderService
    from pocho_rt.payment_service import PaymentService
    from pocho_rt.rider_service import RiderService


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    node_id: str
    pool: asyncpg.Pool
    redis: Redis
    tokens: TokenService
    sio: GuardedServer
    supervisor: Supervisor  # owns every background loop of this process
    search: SearchIndex
    search_outbox: OutboxWorker | None  # drains search_outbox into Meilisearch; None without it
    sessions: SessionEnder  # ends live sockets of a session or user on every node
    writer: Writer  # the node's group-commit writer, shared by every actor kind
    actors: ActorSystem  # the node's actors, every kind
    geo: GeoIndex  # Redis geo indexes (vendors, open requests)
    negotiation: NegotiationService  # meal-request actors and the lookups namespaces need
    riders: RiderService  # rider-session actors, available-rider index, location history
    orders: OrderService  # order actors: status, dispatch, SLA timers
    cluster: ClusterRuntime  # shards, routing to other nodes, rooms across nodes (issue 9)
    # payments (issue 8) services below this line
    payments: PaymentService  # initialise, webhooks inbox and worker, reconcile; its .refunds, .settlement

    # users (issue 15) services below this line
    pii: PiiCodec  # seals personal columns at rest, blind indexes for lookups (persistence.pii)

    # analytics and AI (issue 11)
    analytics: AnalyticsService  # keeps the analytics rollups current
    ai: AiServices  # the ML clients (auto-bid, recommendations, ETA) behind their flags

    # notifications (issue 10)
    notify: NotifyService  # the outbox dispatcher (push, SMS) and what producers queue with it


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
