"""The one error shape of PROTOCOL, shared by HTTP answers and socket acks.

Rules and the runtime raise `engine.errors.EngineError`; the edge adds `ApiError` (an
EngineError with an HTTP status and headers). Both are rendered by the same two functions,
`error_body` (HTTP) and `error_ack` (sockets), so no handler converts errors by hand.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from redis import exceptions as redis_errors

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


# Storage that is away, frozen or overloaded: the command was not applied (PROTOCOL
# `unavailable`), however deep below the edge the call was made. Deadlines (persistence/db.py,
# pocho_rt/redis_client.py) turn a hang into one of these within seconds.
_STORAGE_FAILURES: tuple[type[BaseException], ...] = (
    TimeoutError,  # a pool acquire, statement or Redis command past its deadline
    OSError,  # refused, reset, unreachable (ConnectionError included)
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,  # closed in the middle of a statement
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,  # statement_timeout, or cancelled after our deadline
    asyncpg.ReadOnlySQLTransactionError,  # a standby during failover
    redis_errors.ConnectionError,  # BusyLoadingError included
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
)
_CLOSED_MARKERS = ("connection is closed", "pool is closing", "connection was closed")


def storage_failure(exc: BaseException) -> bool:
    """True when `exc` says PostgreSQL or Redis could not be reached in time (not our bug)."""
    if isinstance(exc, _STORAGE_FAILURES):
        return True
    if isinstance(exc, asyncpg.InterfaceError):  # asyncpg reports a dead connection this way too
        return any(m in str(exc) for m in _CLOSED_MARKERS)
    return False


def storage_unavailable() -> EngineError:
    """What a client is told when storage failed before its command was applied."""
    return EngineError("unavailable", "storage is unavailable, retry shortly")
