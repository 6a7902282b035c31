"""What the fake payment providers share: a real aiohttp server on 127.0.0.1:<random port>,
the bearer secret key check, a log of requests, and switches a test flips (`down`: every
endpoint answers 503)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.local import serve


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token(n: int = 8) -> str:
    return secrets.token_hex(n)


class FakeServer:
    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key
        self.url = ""
        self.down = False
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, json body or query)
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def unauthorized(self) -> web.Response:
        raise NotImplementedError

    async def start(self) -> str:
        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            body: Any = dict(request.query)
            if request.can_read_body:
                body = await request.json()
            self.requests.append((request.method, request.path, body))
            if self.down:
                return web.json_response({"message": "service unavailable"}, status=503)
            if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
                return self.unauthorized()
            return await handler(request)

        app = web.Application(middlewares=[guard])
        self.routes(app)
        self._runner, self.url = await serve(app)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def calls(self, method: str, prefix: str) -> list[Any]:
        return [b for m, p, b in self.requests if m == method and p.startswith(prefix)]
