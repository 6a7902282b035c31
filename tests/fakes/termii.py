"""A small in-process Termii: a real aiohttp server on 127.0.0.1:<random port> answering the
Messaging API call adapters/termii.py makes, with Termii's documented shapes:

    POST /api/sms/send  {api_key, to, from, sms, type, channel}
      -> 200 {code: "ok", message_id, message: "Successfully Sent", balance, user}
      -> 401 {message} wrong api_key; 400 {message} missing field / invalid number / bad
         channel or type / sender id not registered / insufficient balance

Test controls: `balance` (units; one SMS costs one), `fail_next` (HTTP statuses to answer, in
order, before handling normally: 429 and 5xx with Termii-like bodies), `hang` (while set to
an unset asyncio.Event, requests wait on it: the client's timeout fires first), `sent` (the
messages accepted), `requests` (every decoded body).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import web

from tests.fakes.local import serve


class FakeTermii:
    def __init__(self, api_key: str = "termii-test-key", sender_ids: tuple[str, ...] = ("Pocho",)) -> None:
        self.api_key = api_key
        self.sender_ids = set(sender_ids)
        self.balance = 100
        self.fail_next: list[int] = []
        self.hang: asyncio.Event | None = None
        self.sent: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._ids = itertools.count(3017544054459493)
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/sms/send", self.send)
        self._runner, self.url = await serve(app)
        return self.url

    async def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self._runner:
            await self._runner.cleanup()

    async def send(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "Invalid JSON payload"}, status=400)
        self.requests.append(body)
        if self.hang is not None:
            await self.hang.wait()
        if self.fail_next:
            status = self.fail_next.pop(0)
            message = "Too many requests" if status == 429 else "Internal server error"
            return web.json_response({"message": message}, status=status)
        if not isinstance(body, dict):
            return web.json_response({"message": "Invalid JSON payload"}, status=400)
        if body.get("api_key") != self.api_key:
            return web.json_response({"message": "Invalid API key"}, status=401)
        for field in ("to", "from", "sms", "type", "channel"):
            if not isinstance(body.get(field), str) or not body[field]:
                return web.json_response({"message": f"The {field} field is required."}, status=400)
        to = body["to"]
        if not to.isdigit() or not 10 <= len(to) <= 15:
            return web.json_response({"message": "Invalid phone number"}, status=400)
        if body["channel"] not in ("generic", "dnd", "whatsapp"):
            return web.json_response({"message": "Invalid channel"}, status=400)
        if body["type"] not in ("plain", "unicode"):
            return web.json_response({"message": "Invalid message type"}, status=400)
        if body["from"] not in self.sender_ids:
            return web.json_response(
                {"message": f"ApplicationSenderId not found for senderName: {body['from']}"}, status=400
            )
        if self.balance < 1:
            return web.json_response({"message": "Insufficient balance"}, status=400)
        self.balance -= 1
        message_id = str(next(self._ids))
        self.sent.append({**body, "message_id": message_id})
        return web.json_response(
            {
                "code": "ok",
                "message_id": message_id,
                "message": "Successfully Sent",
                "balance": self.balance,
                "user": "Pocho Test",
            }
        )
