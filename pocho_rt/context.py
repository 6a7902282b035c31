"""The long-lived services of one server process, handed to every handler via the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from pocho_rt.auth.tokens import TokenService
from pocho_rt.config import Settings

if TYPE_CHECKING:
    from pocho_rt.runtime import Engine


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    tokens: TokenService
    node_id: str
    engine: Engine | None = None
    # Filled in by the modules that own them at app build time (engine, search, sms...).
    extras: dict[str, Any] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
