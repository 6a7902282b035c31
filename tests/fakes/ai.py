"""Local ML services for tests: one real aiohttp server on 127.0.0.1:<random port> speaking
the three documented APIs (docs/AI.md), with the same request and response shapes:

    POST /v1/suggest-price  {request, vendor, rule}                    -> {priceKobo, prepMinutes?}
    POST /v1/rank-offers    {customerId, requestId, ..., offers[]}     -> {offerIds}
    POST /v1/eta            {origin, destination, speedKmh}            -> {etaMinutes}

Authorization: `Authorization: Bearer <key>` must match `key` (401 otherwise).

Test controls, per path: `answers[path]` (a function of the body, or a fixed object),
`mode[path]`: "ok", "error" (500), "slow" (answers after `slow_seconds`, far past any
client timeout), "garbage" (200 with a body of the wrong shape). `calls[path]` holds every
body received, in order.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.local import serve

SUGGEST = "/v1/suggest-price"
RANK = "/v1/rank-offers"
ETA = "/v1/eta"


class FakeAi:
    def __init__(self, key: str = "test-ai-key") -> None:
        self.key = key
        self.answers: dict[str, Callable[[dict[str, Any]], Any] | Any] = {
            SUGGEST: {"priceKobo": 250_000},
            RANK: lambda body: {"offerIds": [o["id"] for o in reversed(body["offers"])]},
            ETA: {"etaMinutes": 42},
        }
        self.mode: dict[str, str] = defaultdict(lambda: "ok")
        self.calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.slow_seconds = 5.0
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeAi:
        app = web.Application()
        for path in (SUGGEST, RANK, ETA):
            app.router.add_post(path, self._handle)
        self._runner, self.url = await serve(app, shutdown_timeout=0.1)
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": "unauthorized"}, status=401)
        path = request.path
        body = await request.json()
        self.calls[path].append(body)
        mode = self.mode[path]
        if mode == "error":
            return web.json_response({"error": "model exploded"}, status=500)
        if mode == "slow":
            try:
                await asyncio.wait_for(self._stop.wait(), self.slow_seconds)
            except TimeoutError:
                pass
        if mode == "garbage":
            return web.json_response({"unexpected": True})
        answer = self.answers[path]
        return web.json_response(answer(body) if callable(answer) else answer)
