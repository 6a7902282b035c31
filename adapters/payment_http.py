"""What the Paystack and Flutterwave clients share: one httpx.AsyncClient per provider with
timeouts, the secret key as a bearer token, errors mapped to `engine.ports.ProviderError`
kinds, and a metric per call. The key is never logged; bodies are not logged either (they
hold customer emails and account numbers)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from prometheus_client import Counter

from engine.ports import ProviderError
from engine.runtime.metrics import REGISTRY

log = logging.getLogger("pocho.payments.provider")

PROVIDER_CALLS = Counter(
    "pocho_payment_provider_calls",
    "Calls to payment provider APIs, by provider, call and outcome (ok, unavailable, invalid_key, not_found, rejected)",
    ["provider", "call", "outcome"],
    registry=REGISTRY,
)


class ProviderClient:
    """A JSON API behind a bearer secret key; `call` returns the decoded body of a 2xx answer."""

    def __init__(self, name: str, base_url: str, secret_key: str, timeout: float) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {secret_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        call: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        not_found_words: tuple[str, ...] = ("not found",),
    ) -> dict[str, Any]:
        """One request. Network trouble and 5xx: `unavailable`; 401/403 or a 4xx saying the key is
        invalid (Paystack answers "Invalid key"): `invalid_key`; 404, or a 4xx whose message has
        one of `not_found_words`: `not_found`; other 4xx: `rejected`."""
        try:
            resp = await self._client.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            self._count(call, "unavailable")
            raise ProviderError("unavailable", f"{self.name} {call}: {type(exc).__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        if resp.status_code >= 500 or body is None:
            self._count(call, "unavailable")
            raise ProviderError("unavailable", f"{self.name} {call}: HTTP {resp.status_code}")
        low = message.lower()
        if resp.status_code in (401, 403) or (resp.status_code >= 400 and "key" in low and "invalid" in low):
            self._count(call, "invalid_key")
            log.error("payment provider refused our key", extra={"provider": self.name, "call": call})
            raise ProviderError("invalid_key", f"{self.name} {call}: {message or 'unauthorized'}")
        if resp.status_code == 404 or (resp.status_code >= 400 and any(w in message.lower() for w in not_found_words)):
            self._count(call, "not_found")
            raise ProviderError("not_found", f"{self.name} {call}: {message or 'not found'}")
        if resp.status_code >= 400 or not isinstance(body, dict):
            self._count(call, "rejected")
            raise ProviderError("rejected", f"{self.name} {call}: {message or f'HTTP {resp.status_code}'}")
        self._count(call, "ok")
        return body

    def _count(self, call: str, outcome: str) -> None:
        PROVIDER_CALLS.labels(self.name, call, outcome).inc()


def data_of(body: dict[str, Any], name: str, call: str) -> dict[str, Any]:
    """The `data` object of a provider answer (`unavailable` when the shape is not what the
    provider documents: better retried than trusted)."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProviderError("unavailable", f"{name} {call}: answer without a data object")
    return data


def text_of(data: dict[str, Any], key: str, name: str, call: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        raise ProviderError("unavailable", f"{name} {call}: answer without {key}")
    return str(value)
