"""The one HTTP path of every ML client: JSON POST with a bearer key, a strict total timeout,
the circuit breaker, typed decoding of the answer, metrics.

Every way a call can fail (breaker open, timeout, connection error, non-2xx status, an
answer that does not decode into the declared type) raises `AiUnavailable`: callers have
one thing to catch and fall back on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import httpx
import msgspec
from prometheus_client import Counter, Gauge, Histogram

from adapters.ai.breaker import OPEN, CircuitBreaker
from engine.runtime.metrics import REGISTRY

log = logging.getLogger("pocho.ai")
T = TypeVar("T")

CALLS = Counter(
    "pocho_ai_calls_total",
    "ML service calls by service and outcome (ok, timeout, error, status, invalid, open)",
    ["service", "outcome"],
    registry=REGISTRY,
)
CALL_SECONDS = Histogram(
    "pocho_ai_call_seconds",
    "ML service call time (calls that went out)",
    ["service"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1),
)
BREAKER_OPEN = Gauge(
    "pocho_ai_breaker_open", "1 while a service's circuit breaker is not closed", ["service"], registry=REGISTRY
)
_JSON: Final = {"Content-Type": "application/json", "Accept": "application/json"}


class AiUnavailable(Exception):
    """The service gave no usable answer in time; `reason` is the metric outcome."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


class AiClient:
    """One ML service: base URL, key, timeout and its own breaker."""

    def __init__(
        self,
        service: str,
        base_url: str,
        key: str,
        *,
        timeout_seconds: float,
        breaker_failures: int,
        breaker_reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.timeout = timeout_seconds
        self.breaker = CircuitBreaker(breaker_failures, breaker_reset_seconds, clock, on_change=self._breaker_changed)
        headers = dict(_JSON)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        BREAKER_OPEN.labels(service).set(0)

    def _breaker_changed(self, state: str) -> None:
        BREAKER_OPEN.labels(self.service).set(0 if state == "closed" else 1)
        log.warning("ai breaker %s", state, extra={"service": self.service, "state": state})

    @property
    def open(self) -> bool:
        return self.breaker.state == OPEN

    async def post(self, path: str, body: Any, answer: type[T]) -> T:
        """POST `body` (msgspec-encodable) and decode the answer as `answer`, within the timeout."""
        if not self.breaker.allow():
            CALLS.labels(self.service, "open").inc()
            raise AiUnavailable(self.service, "open")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._http.post(path, content=msgspec.json.encode(body))
            if resp.status_code // 100 != 2:
                raise AiUnavailable(self.service, "status")
            result = msgspec.json.decode(resp.content, type=answer)
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except (TimeoutError, httpx.TimeoutException):
            self._failed("timeout", started)
        except httpx.HTTPError:
            self._failed("error", started)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self._failed("invalid", started)
        except AiUnavailable as exc:
            self._failed(exc.reason, started)
        self.breaker.success()
        CALLS.labels(self.service, "ok").inc()
        CALL_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        return result

    def _failed(self, reason: str, started: float) -> NoReturn:
        self.breaker.failure()
        CALLS.labels(self.service, reason).inc()
        CALL_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        raise AiUnavailable(self.service, reason)

    async def close(self) -> None:
        await self._http.aclose()
