"""The one error shape of PROTOCOL, shared by HTTP answers and socket acks.

Rules and the runtime raise `engine.errors.EngineError`; the edge adds `ApiError` (an
EngineError with an HTTP status and headers). Both are rendered by the same two functions,
`error_body` (HTTP) and `error_ack` (sockets), so no handler converts errors by hand.
"""

from __future__ import annotations

from typing import Any

from engine.errors import EngineError

# PROTOCOL error code -> HTTP status
STATUS = {
    "invalid": 400,
    "unauthorized": 401,
    "totp_required": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "expired": 409,
    "limit_reached": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
    "timeout": 504,
}
RETRY_AFTER_SECONDS = "2"  # PROTOCOL: `unavailable` over HTTP is 503 with Retry-After


class ApiError(EngineError):
    """Raised by the edge (auth, validation, HTTP lookups); rendered like any EngineError."""

    def __init__(
        self,
        code: str,
        message: str = "",
        details: dict[str, Any] | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, details)
        self.status = status or STATUS.get(code, 400)
        self.headers = headers


def error_body(exc: EngineError) -> dict[str, Any]:
    err: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        err["details"] = exc.details
    return {"error": err}


def error_ack(exc: EngineError) -> dict[str, Any]:
    """A failed socket ack."""
    return {"ok": False, **error_body(exc)}


def http_status(exc: EngineError) -> tuple[int, dict[str, str] | None]:
    """The HTTP status and headers for an error (Retry-After on `unavailable`)."""
    if isinstance(exc, ApiError):
        status, headers = exc.status, exc.headers
    else:
        status, headers = STATUS.get(exc.code, 400), None
    if status == 503 and not (headers and "Retry-After" in headers):
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER_SECONDS}
    return status, headers


def ok(data: Any) -> dict[str, Any]:
    """A successful socket ack."""
    return {"ok": True, "data": data}
