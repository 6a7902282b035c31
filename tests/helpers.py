"""Client-side helpers for tests: real HTTP calls and real Socket.IO clients."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import aiohttp
import socketio

if TYPE_CHECKING:
    from tests.conftest import Server

PASSWORD = "correct-horse-battery"
_phones = itertools.count(1)


def new_phone() -> str:
    return f"+23480{next(_phones):08d}"


class Client:
    """An HTTP client bound to one test server, plus account and socket shortcuts."""

    def __init__(self, session: aiohttp.ClientSession, server: Server) -> None:
        self.session = session
        self.server = server
        self.sockets: list[socketio.AsyncClient] = []

    async def call(self, method: str, path: str, json: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, Any]:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, path, json=json, data=data, headers=h) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            return resp.status, body

    async def register(self, role: str = "CUSTOMER", **fields: Any) -> dict[str, Any]:
        """Register a user; returns {user, tokens} (201 asserted)."""
        payload = {"phone": new_phone(), "password": PASSWORD, "role": role,
                   "firstName": "Test", "lastName": role.title(), **fields}
        status, body = await self.call("POST", "/api/v1/auth/register", payload)
        assert status == 201, body
        body["password"] = payload["password"]
        return dict(body)

    def admin_headers(self) -> dict[str, str]:
        return {"X-Admin-Key": self.server.svc.settings.admin_key}

    async def connect(self, namespace: str, token: str | None, *, transports: list[str] | None = None,
                      wait: bool = True) -> socketio.AsyncClient:
        """A real Socket.IO client connected to one namespace (raises ConnectionError if refused)."""
        sio = socketio.AsyncClient(reconnection=False)
        self.sockets.append(sio)
        await sio.connect(self.server.url, namespaces=[namespace], auth={"token": token} if token else None,
                          transports=transports or ["websocket"], wait_timeout=5)
        return sio

    async def close(self) -> None:
        for s in self.sockets:
            if s.connected:
                await s.disconnect()
