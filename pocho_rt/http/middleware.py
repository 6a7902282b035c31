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
from pocho_rt import ratelimit
from pocho_rt.context import services
from pocho_rt.errors import ApiError, error_body, http_status, storage_failure, storage_unavailable
from pocho_rt.http.guard import BodyTimeoutError
from pocho_rt.logs import request_id
from pocho_rt.metrics import HTTP_LATENCY, HTTP_REQUESTS, STORAGE_UNAVAILABLE
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


def _bad_text(value: str) -> str | None:
    """Why a decoded header or query value cannot be stored or compared, or None."""
    if "\x00" in value:
        return "NUL character"
    if not value.isascii() and any("\ud800" <= ch <= "\udfff" for ch in value):
        return "not valid UTF-8"  # aiohttp keeps undecodable bytes as lone surrogates
    return None


def _check_request(request: web.Request) -> None:
    """Headers and query parameters that would break a handler deep down (a 500 from PostgreSQL
    or from encoding) are refused here, once, as `invalid`."""
    for name, value in request.headers.items():
        if (why := _bad_text(value)) is not None:
            raise ApiError("invalid", f"invalid header {name[:64]}: {why}", {name[:64]: why})
    for name, value in request.query.items():
        if (why := _bad_text(value) or _bad_text(name)) is not None:
            field = name[:64] if _bad_text(name) is None else "query"
            raise ApiError("invalid", f"invalid {field}: {why}", {field: why})


def _error_response(exc: EngineError) -> web.Response:
    status_code, headers = http_status(exc)
    return json_response(error_body(exc), status_code, headers)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    token = request_id.set(rid)
    started = time.perf_counter()
    status = 500
    slots = ratelimit.held()
    try:
        try:
            _check_request(request)
            response = await handler(request)
        except EngineError as exc:  # ApiError included: one rendering for every PROTOCOL error
            response = _error_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = _HTTP_CODES.get(exc.status, "error")
            response = json_response({"error": {"code": code, "message": exc.reason}}, exc.status)
        except BodyTimeoutError as exc:  # the client stopped sending its body (guard.py)
            response = _error_response(ApiError("invalid", str(exc), {"body": "incomplete"}, status=408))
            response.force_close()
        except Exception as exc:
            if storage_failure(exc):  # PostgreSQL or Redis away or past its deadline: not applied
                log.warning("storage unavailable", extra={"path": request.path, "error": type(exc).__name__})
                STORAGE_UNAVAILABLE.labels("http").inc()
                await ratelimit.give_back(services(request), slots)  # not an attempt that counts
                response = _error_response(storage_unavailable())
            else:
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


_JSON_TYPES = ("application/json",)


async def body(request: web.Request, typ: type[T]) -> T:
    """Read and validate a JSON body (413 past the size limit, 400 with field details).

    An empty body is `{}`; a non-empty one must say `Content-Type: application/json` (or a
    `+json` type), else 415 with the `invalid` code: JSON sent as text/plain or a form is a
    client bug worth naming, not something to guess at."""
    raw = await request.read()
    if not raw:
        return decode_json(b"{}", typ)
    ctype = request.content_type
    if ctype not in _JSON_TYPES and not ctype.endswith("+json"):
        raise ApiError(
            "invalid",
            f"unsupported Content-Type {ctype[:64]!r}: send application/json",
            {"contentType": "must be application/json"},
            status=415,
        )
    return decode_json(raw, typ)
