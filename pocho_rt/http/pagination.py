"""The `limit` query parameter, parsed the same way by every listing route."""

from __future__ import annotations

from aiohttp import web

from pocho_rt.errors import ApiError


def limit_param(request: web.Request, *, default: int, maximum: int) -> int:
    """`?limit=` as an integer 1..maximum, `default` when absent; anything else is 400 `invalid`
    with details.limit (a bad limit is refused, never clamped, so clients notice)."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        reason = f"must be an integer between 1 and {maximum}"
        raise ApiError("invalid", f"invalid limit: {reason}", {"limit": reason})
    return limit
