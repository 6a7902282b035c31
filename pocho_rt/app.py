"""Wiring: every service of a node is built here, once, and every background loop is
started here under the node's supervisor. Route modules only register routes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from adapters.flutterwave import FlutterwaveClient
from adapters.geo import GeoIndex
from adapters.meilisearch import MeiliSearchIndex
from adapters.paystack import PaystackClient
from adapters.search_pg import PgSearchIndex
from engine.ports import PaymentProvider, SearchIndex
from engine.runtime.actor import ActorSystem
from persistence import catalogue as catalogue_db
from persistence import outbox
from persistence.db import create_pool
from persistence.migrate import migrate
from persistence.pii import PiiCodec
from persistence.writer import Writer
from pocho_rt import notify_service
from pocho_rt.ai_service import AiServices
from pocho_rt.analytics_service import AnalyticsService
from pocho_rt.auth.sessions import SessionEnder
from pocho_rt.auth.tokens import TokenService
from pocho_rt.cluster_runtime import ClusterRuntime
from pocho_rt.config import Settings
from pocho_rt.context import SERVICES, Services
from pocho_rt.errors import storage_failure
from pocho_rt.http import (
    accounts,
    admin,
    admin_users,
    catalogue,
    health,
    me,
    meal_requests,
    orders,
    recovery,
)
from pocho_rt.http import analytics as analytics_http
from pocho_rt.http import autobid as autobid_http
from pocho_rt.http import notifications as notifications_http
from pocho_rt.http import payments as payment_routes
from pocho_rt.http.guard import make_runner
from pocho_rt.http.middleware import observe
from pocho_rt.negotiation_service import NegotiationService
from pocho_rt.order_service import OrderService
from pocho_rt.payment_service import PaymentService
from pocho_rt.presence import PresenceBoard
from pocho_rt.redis_client import connect_redis
from pocho_rt.rider_service import RiderService
from pocho_rt.sockets.customer import CustomerNamespace
from pocho_rt.sockets.rider import RiderNamespace
from pocho_rt.sockets.server import create_sio
from pocho_rt.sockets.vendor import VendorNamespace
from pocho_rt.tasks import Supervisor

log = logging.getLogger("pocho.app")
_SEARCH_OUTBOX_KEEP_SECONDS = 3600.0  # without Meilisearch nothing drains search_outbox
_SEARCH_OUTBOX_PRUNE_EVERY = 300.0
_SHUTDOWN_GRACE = 5.0  # seconds aiohttp waits for HTTP requests still running at shutdown


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def build_providers(settings: Settings) -> dict[str, PaymentProvider]:
    """A client for each provider whose secret key is set."""
    providers: dict[str, PaymentProvider] = {}
    timeout = settings.payment_provider_timeout
    if settings.paystack_secret_key:
        providers["PAYSTACK"] = PaystackClient(settings.paystack_base_url, settings.paystack_secret_key, timeout)
    if settings.flutterwave_secret_key:
        providers["FLUTTERWAVE"] = FlutterwaveClient(
            settings.flutterwave_base_url, settings.flutterwave_secret_key, timeout, settings.payment_redirect_url
        )
    return providers


async def open_services(settings: Settings, database_url: str, redis_url: str) -> Services:
    """Connect to PostgreSQL and Redis and build every service of this node (nothing runs yet:
    `build_app` starts the loops when the app starts)."""
    pool = await create_pool(
        database_url,
        size=settings.db_pool_size,
        acquire_timeout=settings.db_acquire_timeout,
        query_timeout=settings.db_query_timeout,
    )
    redis = connect_redis(redis_url, settings)
    try:
        await redis.ping()
    except BaseException:
        await redis.aclose()
        await pool.close()
        raise
    node_id = settings.node_id or default_node_id()
    supervisor = Supervisor()
    writer = Writer(
        pool,
        flush_ms=settings.writer_flush_ms,
        batch_rows=settings.writer_batch_rows,
        queue_max=settings.writer_queue_max,
        connections=min(settings.writer_connections, max(1, settings.db_pool_size - 2)),  # leave reads some
        bulk=settings.writer_bulk,
        bulk_json=settings.writer_bulk_json,
        slow_ms=settings.writer_slow_ms,
    )
    actors = ActorSystem(
        mailbox_size=settings.actor_mailbox_size,
        idle_seconds=settings.actor_idle_seconds,
        ask_timeout=settings.ask_timeout_seconds,
        transient=storage_failure,
    )
    geo = GeoIndex(redis)
    pii = PiiCodec.build(settings.pii_key, settings.pii_old_keys, settings.pii_index_key, settings.pii_old_index_key)
    cluster = ClusterRuntime(settings, node_id, redis, pool)
    sio = create_sio(settings, supervisor, cluster.manager())
    cluster.attach(actors, sio)
    ai = AiServices(settings, pool)  # analytics and AI (issue 11)
    riders = RiderService(settings, pool, redis, sio, actors, eta=ai.eta)
    search: SearchIndex
    search_outbox: outbox.OutboxWorker | None = None
    if settings.meilisearch_url:
        meili = MeiliSearchIndex(settings.meilisearch_url, settings.meilisearch_api_key)

        async def _sync(rows: list[asyncpg.Record]) -> dict[int, str]:
            return await catalogue_db.sync_search(pool, meili, rows)

        search = meili
        search_outbox = outbox.OutboxWorker(pool, outbox.SEARCH_OUTBOX, _sync, prepare=meili.configure)
    else:
        search = PgSearchIndex(pool)
    services = Services(
        settings=settings,
        node_id=node_id,
        pool=pool,
        redis=redis,
        tokens=TokenService(settings.jwt_secret, settings.jwt_access_ttl),
        sio=sio,
        supervisor=supervisor,
        search=search,
        search_outbox=search_outbox,
        sessions=SessionEnder(redis, sio, node_id),
        writer=writer,
        actors=actors,
        geo=geo,
        negotiation=NegotiationService(
            settings, pool, sio, writer, actors, geo, pii, cluster.node, PresenceBoard(redis, node_id, cluster.live)
        ),
        riders=riders,
        orders=OrderService(settings, pool, sio, writer, actors, riders, cluster.node),
        cluster=cluster,
        # payments (issue 8) services below this line
        payments=PaymentService(settings, pool, build_providers(settings), pii),
        # users (issue 15) services below this line
        pii=pii,
        # analytics and AI (issue 11)
        analytics=AnalyticsService(pool, settings.analytics_refresh_seconds),
        ai=ai,
        # notifications (issue 10)
        notify=notify_service.build(settings, pool, pii, sio),
    )
    cluster.on_taken(services.negotiation.sweep_now.set)
    cluster.on_taken(services.orders.sweep_now.set)
    return services


async def close_services(svc: Services) -> None:
    await svc.supervisor.stop()  # normally already stopped with the app; a no-op then
    await svc.payments.close()
    await svc.ai.close()
    await svc.notify.close()  # notifications (issue 10)
    if isinstance(svc.search, MeiliSearchIndex):
        await svc.search.close()
    await svc.redis.aclose()
    await svc.pool.close()


async def _prune_search_outbox(pool: asyncpg.Pool) -> None:
    """PostgreSQL search reads the tables themselves, so nothing drains `search_outbox`: drop
    old rows so it cannot grow without bound (`pocho-rt reindex` refills it for Meilisearch)."""
    while True:
        try:
            await outbox.prune(pool, outbox.SEARCH_OUTBOX, _SEARCH_OUTBOX_KEEP_SECONDS, undelivered=True)
        except Exception as exc:  # storage away: try again next round
            log.warning("search outbox prune failed", extra={"error": type(exc).__name__})
        await asyncio.sleep(_SEARCH_OUTBOX_PRUNE_EVERY)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start every loop on app start-up; after `_drain` has run, stop them all."""
    svc = app[SERVICES]
    sup = svc.supervisor
    sup.loop("session-listener", svc.sessions.run)
    if svc.search_outbox is not None:
        sup.loop("search-outbox", svc.search_outbox.run)
    else:
        sup.loop("search-outbox-prune", lambda: _prune_search_outbox(svc.pool))
    sup.loop("writer", svc.writer.run)
    sup.loop("actor-passivation", svc.actors.run_passivation)
    await svc.cluster.start(sup)  # takes this node's shards before anything is served
    await svc.negotiation.start(sup)
    await svc.riders.start(sup, clear_index=svc.cluster.alone())
    await svc.orders.start(sup)
    # payments (issue 8) loops below this line
    await svc.payments.start(sup, svc.orders)

    # users (issue 15) loops below this line

    # analytics and AI (issue 11)
    sup.loop("analytics-refresh", svc.analytics.run)
    svc.ai.start(sup, svc.negotiation)

    # notifications (issue 10)
    if svc.settings.notify_dispatch:
        sup.loop("notify-dispatcher", svc.notify.run)

    await svc.sessions.ready.wait()
    yield
    await sup.stop()


async def _drain(app: web.Application) -> None:
    """Shutdown, before aiohttp waits for open connections: commit what is queued (commands in
    flight get their acks, new ones `unavailable`), deliver its events, then hang up every
    socket so no connection holds the process open."""
    svc = app[SERVICES]
    await svc.cluster.leave()  # hands every shard over: its actors' writes commit first
    await svc.writer.stop()
    await svc.negotiation.stop()
    await svc.orders.stop()
    await svc.riders.stop()
    await svc.actors.stop()
    if svc.search_outbox is not None:
        await svc.search_outbox.stop()
    await svc.notify.stop()  # notifications (issue 10)
    await svc.sio.hang_up_all()


def build_app(svc: Services) -> web.Application:
    """The whole server as one aiohttp application (HTTP routes + Socket.IO)."""
    app = web.Application(client_max_size=svc.settings.max_http_body_bytes, middlewares=[observe])
    app[SERVICES] = svc
    app.router.add_routes(health.routes)
    for module in (
        accounts,
        catalogue,
        admin,
        meal_requests,
        orders,
        # payments (issue 8) route modules below this line
        payment_routes,
        # users (issue 15) route modules below this line
        me,
        recovery,
        admin_users,
        # analytics and AI (issue 11)
        analytics_http,
        autobid_http,
        # notifications (issue 10)
        notifications_http,
    ):
        module.setup(app)
    for ns in (CustomerNamespace("/customer", svc), VendorNamespace("/vendor", svc), RiderNamespace("/rider", svc)):
        svc.sio.register_namespace(ns)
    svc.sio.attach(app)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_drain)
    return app


async def run_migrations(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return await migrate(conn)


async def serve(
    settings: Settings,
    database_url: str,
    redis_url: str,
    *,
    do_migrate: bool,
    do_seed: bool,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one node until `stop` is set (or forever)."""
    svc = await open_services(settings, database_url, redis_url)
    try:
        if do_migrate:
            applied = await run_migrations(svc.pool)
            log.info("migrations done", extra={"applied": applied})
        if do_seed:
            from pocho_rt.seed import seed

            await seed(svc.pool, svc.pii)
        app = build_app(svc)
        runner = make_runner(app, settings, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE)
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
