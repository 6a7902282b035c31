"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.runtime.metrics import REGISTRY
from pocho_rt.context import services
from pocho_rt.http.middleware import json_response
from pocho_rt.metrics import DB_POOL_IDLE, DB_POOL_MAX, DB_POOL_SIZE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "node": services(request).node_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks: dict[str, str] = {}

    async def _db() -> None:
        async with svc.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    async def _redis() -> None:
        await svc.redis.ping()

    for name, probe in (("postgres", _db), ("redis", _redis)):
        try:
            await asyncio.wait_for(probe(), 2)
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready
            checks[name] = f"down: {type(exc).__name__}"
    loops = svc.supervisor.status()
    checks["loops"] = "ok" if svc.supervisor.healthy() else "restarting"
    # Every shard this node should own is held (none missing, none handed off half-way).
    checks["shards"] = "ok" if svc.cluster.ready() else "moving"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks, "loops": loops}, 200 if ready else 503
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    pool = services(request).pool
    DB_POOL_SIZE.set(pool.get_size())
    DB_POOL_IDLE.set(pool.get_idle_size())
    DB_POOL_MAX.set(pool.get_max_size())
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp
