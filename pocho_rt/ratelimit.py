"""Fixed-window rate limits in Redis, shared by every node.

One key per (limit, subject) counts hits in the current window: `SET key 0 EX window NX`,
`INCR`, `TTL` run as one MULTI/EXEC, so the window starts with the first hit and never
slides (Redis 6.2 commands only). A hit past `max_hits` is refused with 429
`rate_limited`, a `Retry-After` header (seconds left in the window) and the
`pocho_rate_limited_total{limit=...}` metric. `release` gives a slot back, which lets a
limit count only failures: a login takes a slot *before* checking the password (so a
burst of parallel guesses cannot overshoot) and returns it when the login succeeds.

Subjects (phone numbers, IPs, user ids) are hashed into the key, so Redis holds no
phone numbers. `settings.rate_limit_enabled = False` turns every limit off (benchmarks).

A slot taken by a request that storage then failed (503 `unavailable`) is given back by the
HTTP middleware (`held`/`give_back`): an outage must not lock users out of logging in.

Client IP: `request.remote`, the TCP peer. `X-Forwarded-For` is deliberately ignored:
anyone can send it, and trusting it would let an attacker pick a fresh "IP" per request.
Behind a reverse proxy every client then shares the proxy's address; such deployments
should raise LOGIN_PER_IP or add an explicit trusted-proxy setting before using the header.
"""

from __future__ import annotations

import contextlib
import hashlib
from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.metrics import RATE_LIMITED


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # metric label and key part
    max_hits: int
    window: int  # seconds


# Failed logins for one phone number: 5 per 15 minutes, then locked until the window ends.
LOGIN_PER_PHONE = Limit("login_phone", 5, 15 * 60)
# Failed logins from one IP, any phone (credential stuffing): 50 per 15 minutes.
LOGIN_PER_IP = Limit("login_ip", 50, 15 * 60)
# Verification SMS per user: 3 per 10 minutes (each one costs money and pesters a phone).
VERIFY_REQUEST_PER_USER = Limit("verify_request", 3, 10 * 60)
# users (issue 15). Password reset requests per phone (known or not: the answer must not
# differ) and per IP (one client walking through numbers), and confirmations per IP.
RESET_REQUEST_PER_PHONE = Limit("reset_request_phone", 3, 15 * 60)
RESET_REQUEST_PER_IP = Limit("reset_request_ip", 20, 15 * 60)
RESET_CONFIRM_PER_IP = Limit("reset_confirm_ip", 30, 15 * 60)
# Wrong current passwords on POST /api/v1/me/password (a stolen access token guessing).
PASSWORD_CHANGE_PER_USER = Limit("password_change", 5, 15 * 60)
# Codes texted to a new number (phone change), and data exports (each reads everything).
PHONE_CHANGE_PER_USER = Limit("phone_change", 3, 10 * 60)
EXPORT_PER_USER = Limit("export", 5, 60 * 60)

_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


# The slots the current HTTP request holds (set by the middleware for each request).
_held: ContextVar[list[tuple[Limit, str]] | None] = ContextVar("pocho_rate_limit_slots", default=None)


def held() -> list[tuple[Limit, str]]:
    """Start recording the slots this request takes (call once per request, in its own context)."""
    slots: list[tuple[Limit, str]] = []
    _held.set(slots)
    return slots


async def give_back(svc: Services, slots: list[tuple[Limit, str]]) -> None:
    """Release what a failed request still holds; best effort (Redis may be the one away)."""
    for limit, subject in list(slots):
        with contextlib.suppress(Exception):
            await release(svc, limit, subject)


def key(limit: Limit, subject: str) -> str:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"pocho:rl:{limit.name}:{digest}"


def client_ip(request: web.Request) -> str:
    """The TCP peer address (see the module docstring for why not X-Forwarded-For)."""
    return request.remote or "unknown"


async def hit_count(redis: Redis, limit: Limit, subject: str) -> tuple[int, int]:
    """Count one hit; returns (hits in this window, seconds left in it)."""
    k = key(limit, subject)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(k, 0, ex=limit.window, nx=True)
        pipe.incr(k)
        pipe.ttl(k)
        _, count, ttl = await pipe.execute()
    return int(count), int(ttl) if int(ttl) > 0 else limit.window


async def hit(svc: Services, limit: Limit, subject: str) -> None:
    """Take one slot or raise 429 rate_limited with Retry-After; a no-op when limits are off."""
    if not svc.settings.rate_limit_enabled:
        return
    count, ttl = await hit_count(svc.redis, limit, subject)
    if (slots := _held.get()) is not None:
        slots.append((limit, subject))
    if count > limit.max_hits:
        RATE_LIMITED.labels(limit.name).inc()
        raise ApiError(
            "rate_limited",
            "too many attempts, retry later",
            {"limit": limit.name, "retryAfter": ttl},
            headers={"Retry-After": str(ttl)},
        )


async def release(svc: Services, limit: Limit, subject: str) -> None:
    """Give back a slot taken by `hit` (the attempt did not count against the limit)."""
    if not svc.settings.rate_limit_enabled:
        return
    await svc.redis.eval(_RELEASE, 1, key(limit, subject))
    if (slots := _held.get()) is not None and (limit, subject) in slots:
        slots.remove((limit, subject))
