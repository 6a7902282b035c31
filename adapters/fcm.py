"""Firebase Cloud Messaging HTTP v1 (https://firebase.google.com/docs/cloud-messaging/send/v1-api):

    POST {base}/v1/projects/{project_id}/messages:send
         Authorization: Bearer <OAuth2 access token>
         {"message": {"token", "notification": {"title", "body"}, "data": {str: str}}}
      -> 200 {"name": "projects/{project_id}/messages/{id}"}
      -> 4xx/5xx {"error": {"code", "message", "status",
                            "details": [{"@type": "...google.firebase.fcm.v1.FcmError", "errorCode"}]}}

The access token comes from the service account (the JSON of `FCM_SERVICE_ACCOUNT_JSON`): an
RS256-signed JWT assertion exchanged at the account's `token_uri` (grant type jwt-bearer), cached
until shortly (`_EARLY`, at most a tenth of its life) before its `expires_in`, fetched again
after a 401 (once per send).

Classification: the FcmError `errorCode` UNREGISTERED or INVALID_ARGUMENT means the device token
is gone (the caller deletes it). Only the FcmError detail counts: an INVALID_ARGUMENT whose detail
is a google.rpc.BadRequest names a bad field of our message, which is permanent, not the token's
fault. 429, 5xx, timeouts and connection errors are retryable; other answers are permanent.
Tokens, keys and device tokens are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from adapters.delivery import (
    PERMANENT,
    PROVIDER_CALLS,
    RETRYABLE,
    TOKEN_GONE,
    DeliveryError,
    failed,
    json_object,
    retry_after_of,
)

log = logging.getLogger("pocho.notify.fcm")

NAME = "fcm"
DEFAULT_BASE_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TOKEN_GONE_CODES = frozenset({"UNREGISTERED", "INVALID_ARGUMENT"})
_EARLY = 60.0  # refresh the access token this long (at most a tenth of its life) before it expires
_ASSERTION_LIFETIME = 3600  # seconds; Google's maximum


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a Google service-account key file that the token exchange needs."""

    project_id: str
    client_email: str
    private_key: str
    private_key_id: str | None
    token_uri: str

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        """Parse the key file; ValueError naming the missing field (never echoing the key)."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise ValueError("FCM service account is not valid JSON") from None
        if not isinstance(raw, dict):
            raise ValueError("FCM service account must be a JSON object")
        for field in ("project_id", "client_email", "private_key", "token_uri"):
            if not isinstance(raw.get(field), str) or not raw[field]:
                raise ValueError(f"FCM service account lacks {field}")
        kid = raw.get("private_key_id")
        return cls(
            project_id=raw["project_id"],
            client_email=raw["client_email"],
            private_key=raw["private_key"],
            private_key_id=kid if isinstance(kid, str) and kid else None,
            token_uri=raw["token_uri"],
        )


class FcmPush:
    """Sends one push to one device token (implements engine.ports.PushSender).

    `clock` (seconds, monotonic) decides token expiry; `wall` (epoch seconds) stamps the JWT."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        self._clock = clock
        self._wall = wall
        self._send_path = f"/v1/projects/{account.project_id}/messages:send"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        )
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0  # for ops and tests: how often the token endpoint was asked

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, token: str, title: str, body: str, data: Mapping[str, str]) -> str:
        """FCM's message name, or DeliveryError (RETRYABLE / PERMANENT / TOKEN_GONE)."""
        message = {"message": {"token": token, "notification": {"title": title, "body": body}, "data": dict(data)}}
        access = await self._access_token()
        resp = await self._post(access, message)
        if resp.status_code == 401:
            # Revoked or expired earlier than it said: fetch a new token once and try again.
            self._forget(access)
            resp = await self._post(await self._access_token(), message)
        return self._classify(resp)

    async def _post(self, access: str, message: dict[str, Any]) -> httpx.Response:
        try:
            return await self._client.post(self._send_path, json=message, headers={"Authorization": f"Bearer {access}"})
        except httpx.HTTPError as exc:
            raise _fail(RETRYABLE, type(exc).__name__) from None

    def _classify(self, resp: httpx.Response) -> str:
        answer = json_object(resp)
        if resp.status_code < 300:
            name = answer.get("name") if answer else None
            if not isinstance(name, str) or not name:
                raise _fail(RETRYABLE, f"HTTP {resp.status_code} without message name")
            PROVIDER_CALLS.labels(NAME, "sent").inc()
            return name
        error = answer.get("error") if answer else None
        error = error if isinstance(error, dict) else {}
        status = str(error.get("status", ""))
        fcm_code = _fcm_error_code(error)
        what = f"HTTP {resp.status_code} {status} {fcm_code or ''}".strip()
        if fcm_code in _TOKEN_GONE_CODES:
            raise _fail(TOKEN_GONE, what)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _fail(RETRYABLE, what, retry_after_of(resp.headers.get("Retry-After")))
        raise _fail(PERMANENT, what)

    async def _access_token(self) -> str:
        if self._token is not None and self._clock() < self._token_until:
            return self._token
        async with self._token_lock:  # concurrent sends share one fetch
            if self._token is not None and self._clock() < self._token_until:
                return self._token
            token, expires_in = await self._fetch_token()
            self._token = token
            self._token_until = self._clock() + expires_in - min(_EARLY, expires_in / 10)
            return token

    def _forget(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _fetch_token(self) -> tuple[str, float]:
        acct = self._account
        now = int(self._wall())
        claims = {
            "iss": acct.client_email,
            "scope": SCOPE,
            "aud": acct.token_uri,
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME,
        }
        headers = {"kid": acct.private_key_id} if acct.private_key_id else None
        assertion = jwt.encode(claims, acct.private_key, algorithm="RS256", headers=headers)
        self.token_fetches += 1
        try:
            resp = await self._client.post(acct.token_uri, data={"grant_type": GRANT_TYPE, "assertion": assertion})
        except httpx.HTTPError as exc:
            raise _fail(RETRYABLE, f"token: {type(exc).__name__}") from None
        answer = json_object(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _fail(RETRYABLE, f"token: HTTP {resp.status_code}", retry_after_of(resp.headers.get("Retry-After")))
        if resp.status_code >= 400 or answer is None:
            # invalid_grant / invalid_client: our service account is wrong, retrying will not help.
            err = str(answer.get("error", "")) if answer else ""
            log.error("FCM service account refused", extra={"status": resp.status_code, "error": err})
            raise _fail(PERMANENT, f"token: HTTP {resp.status_code} {err}".strip())
        token, expires_in = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise _fail(RETRYABLE, "token: answer without access_token/expires_in")
        return token, float(expires_in)


def _fcm_error_code(error: dict[str, Any]) -> str | None:
    details = error.get("details")
    if not isinstance(details, list):
        return None
    for d in details:
        if isinstance(d, dict) and d.get("@type") == _FCM_ERROR and isinstance(d.get("errorCode"), str):
            return str(d["errorCode"])
    return None


def _fail(kind: str, message: str, retry_after: float | None = None) -> DeliveryError:
    return failed(NAME, kind, message, retry_after)
