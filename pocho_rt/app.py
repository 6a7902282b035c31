"""Wiring: open the pool and Redis, build the aiohttp app with Socket.IO attached, serve."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from persistence.db import create_pool
from persistence.migrate import migrate
from pocho_rt.auth.tokens import TokenService
from pocho_rt.config import Settings
from pocho_rt.context import SERVICES, Services
from pocho_rt.http import accounts, admin, catalogue, health, meal_requests
from pocho_rt.http.middleware import observe
from pocho_rt.runtime import Engine
from pocho_rt.sockets.customer import CustomerNamespace
from pocho_rt.sockets.rider import RiderNamespace
from pocho_rt.sockets.server import create_sio
from pocho_rt.sockets.vendor import VendorNamespace

log = logging.getLogger("pocho.app")


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def open_services(settings: Settings, database_url: str, redis_url: str) -> Services:
    pool = await create_pool(database_url, size=settings.db_pool_size)
    redis = Redis.from_url(redis_url, decode_responses=False)
    await redis.ping()
    return Services(
        settings=settings,
        pool=pool,
        redis=redis,
        tokens=TokenService(settings.jwt_secret, settings.jwt_access_ttl),
        node_id=settings.node_id or default_node_id(),
    )


async def close_services(svc: Services) -> None:
    await svc.redis.aclose()
    await svc.pool.close()


def build_app(svc: Services) -> web.Application:
    """The whole server as one aiohttp application (HTTP routes + Socket.IO)."""
    app = web.Application(client_max_size=svc.settings.max_http_body_bytes, middlewares=[observe])
    app[SERVICES] = svc
    app.router.add_routes(health.routes)
    for module in (accounts, catalogue, admin, meal_requests):
        module.setup(app)
    sio = create_sio(svc.settings)
    for ns in (CustomerNamespace("/customer", svc), VendorNamespace("/vendor", svc),
               RiderNamespace("/rider", svc)):
        sio.register_namespace(ns)
    sio.attach(app)
    svc.extras["sio"] = sio
    engine = Engine(svc.settings, svc.pool, svc.redis, sio)
    svc.engine = engine
    svc.extras["on_vendor_changed"] = engine.vendor_changed

    async def _engine_ctx(_: web.Application) -> AsyncIterator[None]:
        await engine.start()
        yield
        await engine.stop()

    app.cleanup_ctx.append(_engine_ctx)
    return app


async def run_migrations(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return await migrate(conn)


async def serve(settings: Settings, database_url: str, redis_url: str, *,
                do_migrate: bool, do_seed: bool, stop: asyncio.Event | None = None) -> None:
    """Run one node until `stop` is set (or forever)."""
    svc = await open_services(settings, database_url, redis_url)
    try:
        if do_migrate:
            applied = await run_migrations(svc.pool)
            log.info("migrations done", extra={"applied": applied})
        if do_seed:
            from pocho_rt.seed import seed

            await seed(svc.pool)
        app = build_app(svc)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.workers > 1)
        await site.start()
        log.info("serving", extra={"host": settings.host, "port": settings.port, "node": svc.node_id})
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            await runner.cleanup()
    finally:
        await close_services(svc)
