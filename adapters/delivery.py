"""How a notification provider call ended when it did not deliver, shared by the Termii and FCM
adapters so the (future) dispatcher decides retries from one small type, not from HTTP codes."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from prometheus_client import Counter

from engine.runtime.metrics import REGISTRY

# Kinds of DeliveryError.
RETRYABLE = "retryable"  # network trouble, timeout, 429, 5xx: try again later (with backoff)
PERMANENT = "permanent"  # the provider refused this message for good (bad number, no balance, bad key)
TOKEN_GONE = "token_gone"  # FCM: the device token is no longer valid; the caller deletes it

PROVIDER_CALLS = Counter(
    "pocho_notify_provider_calls",
    "Calls to notification providers, by provider and outcome (sent, retryable, permanent, token_gone)",
    ["provider", "outcome"],
    registry=REGISTRY,
)


class DeliveryError(Exception):
    """A provider call that did not deliver. `retry_after`: seconds the provider asked us to wait
    (a 429's Retry-After), when it said so."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


def retry_after_of(value: str | None) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def failed(provider: str, kind: str, message: str, retry_after: float | None = None) -> DeliveryError:
    """Count and log a call that did not deliver, and return its error to raise."""
    PROVIDER_CALLS.labels(provider, kind).inc()
    logging.getLogger(f"pocho.notify.{provider}").warning(
        f"{provider} send failed", extra={"outcome": kind, "reason": message[:200]}
    )
    return DeliveryError(kind, f"{provider}: {message}", retry_after=retry_after)


def json_object(resp: httpx.Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it is not one (providers' error pages)."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
