"""Termii's Messaging API (https://developers.termii.com/messaging-api), the one call SMS needs:

    POST {base}/api/sms/send  {api_key, to, from, sms, type: "plain", channel: "generic"|"dnd"}
      -> 200 {code: "ok", message_id, message: "Successfully Sent", balance, user}

`to` is the international number without "+" (2348012345678). `dnd` is the transactional route
(delivers to numbers on Do-Not-Disturb, no MTN night window): the default, since every SMS we
send (codes, order notices) is transactional. Errors come as 4xx/5xx with `{message}` (or
`{code, message}`): 4xx other than 429 is permanent (invalid number, insufficient balance,
unknown sender id, bad key); 429, 5xx, timeouts and connection errors are retryable.

Neither the api key (it travels in the body) nor the phone nor the text is ever logged.
"""

from __future__ import annotations

import httpx

from adapters.delivery import PERMANENT, PROVIDER_CALLS, RETRYABLE, DeliveryError, failed, json_object, retry_after_of

NAME = "termii"
CHANNELS = ("generic", "dnd")


class TermiiSms:
    """Sends one SMS through Termii. Also satisfies `engine.ports.SmsSender`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        sender_id: str,
        *,
        channel: str = "dnd",
        timeout: float = 5.0,
    ) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"termii channel must be one of {CHANNELS}, not {channel!r}")
        if not 3 <= len(sender_id) <= 11:
            raise ValueError("termii sender id must be 3 to 11 characters")
        self._api_key = api_key
        self._sender = sender_id
        self._channel = channel
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, phone: str, body: str, *, user_id: str | None, kind: str) -> None:
        """engine.ports.SmsSender: send and forget the message id."""
        await self.send_sms(phone, body)

    async def send_sms(self, phone: str, body: str, *, channel: str | None = None) -> str:
        """Termii's message_id of the sent SMS, or DeliveryError (RETRYABLE / PERMANENT)."""
        payload = {
            "api_key": self._api_key,
            "to": phone.removeprefix("+"),
            "from": self._sender,
            "sms": body,
            "type": "plain",
            "channel": channel or self._channel,
        }
        try:
            resp = await self._client.post("/api/sms/send", json=payload)
        except httpx.HTTPError as exc:  # timeouts, refused or dropped connections
            raise _fail(RETRYABLE, type(exc).__name__) from None
        answer = json_object(resp)
        message = str(answer.get("message", "")) if answer else ""
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _fail(
                RETRYABLE, f"HTTP {resp.status_code} {message}".strip(), retry_after_of(resp.headers.get("Retry-After"))
            )
        if resp.status_code >= 400:
            raise _fail(PERMANENT, f"HTTP {resp.status_code} {message}".strip())
        message_id = answer.get("message_id") if answer else None
        if not message_id:
            # A 2xx without a message id is not a documented answer; sending again may duplicate
            # the SMS, but a lost verification code is worse.
            raise _fail(RETRYABLE, f"HTTP {resp.status_code} without message_id")
        PROVIDER_CALLS.labels(NAME, "sent").inc()
        return str(message_id)


def _fail(kind: str, message: str, retry_after: float | None = None) -> DeliveryError:
    return failed(NAME, kind, message, retry_after)
