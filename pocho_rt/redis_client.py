"""The node's Redis client, built to fail fast and heal by itself (issue 14).

- Every command (and every connect) has a deadline, `redis_timeout`: a frozen Redis fails
  a request with `redis.TimeoutError` in about a second, which the edge answers
  `unavailable`, instead of waiting on the kernel.
- A connection error is retried once, on a fresh connection, after a short back-off: the
  first command on a connection that died while Redis was away (restart, failover, a cut
  network) then succeeds instead of failing. Timeouts are not retried, so the deadline is
  not multiplied.
- Idle connections are checked with a PING before reuse after `health_check_interval`.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from pocho_rt.config import Settings

_RETRIES = 1
_BACKOFF_BASE = 0.01
_BACKOFF_CAP = 0.1


def connect_redis(url: str, settings: Settings) -> Redis:
    """A Redis client with deadlines, health checks and a retry on connection errors."""
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=settings.redis_health_check_seconds,
        retry=Retry(ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), _RETRIES, (RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
