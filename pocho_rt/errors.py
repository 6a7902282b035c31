"""The one error shape of PROTOCOL, shared by HTTP answers and socket acks."""

from __future__ import annotations

from typing import Any

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


class ApiError(Exception):
    """Raised anywhere below a handler; the HTTP middleware or socket ack renders it."""

    def __init__(
        self,
        code: str,
        message: str = "",
        details: dict[str, Any] | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code.replace("_", " ")
        self.details = details
        self.status = status or STATUS.get(code, 400)
        self.headers = headers

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}

    def ack(self) -> dict[str, Any]:
        return {"ok": False, **self.body()}


def ok(data: Any) -> dict[str, Any]:
    """A successful socket ack."""
    return {"ok": True, "data": data}
