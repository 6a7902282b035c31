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

from engine.ports import SearchIndex, SmsSender
from persistence.outbox import OutboxWorker
from pocho_rt.auth.tokens import TokenService
from pocho_rt.config import Settings
from pocho_rt.sockets.server import GuardedServer
from pocho_rt.tasks import Supervisor

if TYPE_CHECKING:
    from pocho_rt.auth.sessions import SessionEnder
    from pocho_rt.negotiation_service import NegotiationService


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    node_id: str
    pool: asyncpg.Pool
    redis: Redis
    tokens: TokenService
    sio: GuardedServer
    supervisor: Supervisor  # owns every background loop of this process
    sms: SmsSender
    search: SearchIndex
    search_outbox: OutboxWorker | None  # drains search_outbox into Meilisearch; None without it
    sessions: SessionEnder  # ends live sockets of a session or user on every node
    negotiation: NegotiationService  # meal-request actors and the lookups namespaces need


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
