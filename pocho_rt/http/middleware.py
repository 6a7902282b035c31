"""Request id, JSON errors, metrics and the request log for every HTTP route."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from aiohttp import web

from engine.errors import EngineError
from pocho_rt.errors import error_body, http_status
from pocho_rt.logs import request_id
from pocho_rt.metrics import HTTP_LATENCY, HTTP_REQUESTS
from pocho_rt.validation import decode_json

log = logging.getLogger("pocho.http")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    503: "unavailable",
}


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def _route(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except EngineError as exc:  # ApiError included: one rendering for every PROTOCOL error
            status_code, headers = http_status(exc)
            response = json_response(error_body(exc), status_code, headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "error")
            response = json_response({"error": {"code": code, "message": exc.reason}}, exc.status)
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            response = json_response({"error": {"code": "internal", "message": "internal error"}}, 500)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    finally:
        route = _route(request)
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(route).observe(elapsed)
        if route not in ("/metrics", "/healthz"):
            log.info(
                "http",
                extra={"method": request.method, "route": route, "status": status, "ms": round(elapsed * 1000, 2)},
            )
        request_id.reset(token)


async def body(request: web.Request, typ: type[T]) -> T:
    """Read and validate a JSON body (413 past the size limit, 400 with field details)."""
    raw = await request.read()
    return decode_json(raw or b"{}", typ)
