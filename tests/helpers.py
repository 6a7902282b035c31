"""Client-side helpers for tests: real HTTP calls, real Socket.IO clients, and `eventually`."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg
import socketio

if TYPE_CHECKING:
    from tests.conftest import Server

PASSWORD = "correct-horse-battery"
_phones = itertools.count(1)


def new_phone() -> str:
    return f"+23480{next(_phones):08d}"


async def eventually(
    cond: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,  # noqa: ASYNC109
    what: str = "",
) -> None:
    """Wait until `cond()` (plain or async) is true: for state that has no event to await
    (a row in PostgreSQL, a counter, another process).

    `timeout` only keeps a broken test from hanging, so it is generous; a test never relies
    on it for its outcome. The poll starts fast and backs off to 50 ms.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.001
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'a condition'}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


class Client:
    """An HTTP client bound to one test server, plus account and socket shortcuts."""

    def __init__(self, session: aiohttp.ClientSession, server: Server) -> None:
        self.session = session
        self.server = server
        self.sockets: list[socketio.AsyncClient] = []

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, path, json=json, data=data, headers=h) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            return resp.status, body

    async def register(self, role: str = "CUSTOMER", **fields: Any) -> dict[str, Any]:
        """Register a user; returns {user, tokens} (201 asserted)."""
        payload = {
            "phone": new_phone(),
            "password": PASSWORD,
            "role": role,
            "firstName": "Test",
            "lastName": role.title(),
            **fields,
        }
        status, body = await self.call("POST", "/api/v1/auth/register", payload)
        assert status == 201, body
        body["password"] = payload["password"]
        return dict(body)

    def admin_headers(self) -> dict[str, str]:
        return {"X-Admin-Key": self.server.svc.settings.admin_key}

    async def connect(
        self,
        namespace: str,
        token: str | None,
        *,
        transports: list[str] | None = None,
        wait: bool = True,
        on: dict[str, Callable[..., Any]] | None = None,
        serializer: str = "default",
    ) -> socketio.AsyncClient:
        """A real Socket.IO client connected to one namespace (raises ConnectionError if refused).

        `on`: event handlers registered before connecting, so nothing sent right away is missed.
        `serializer`: "msgpack" for python-socketio's socket.io-msgpack-parser packets."""
        sio = socketio.AsyncClient(reconnection=False, serializer=serializer)
        for event, handler in (on or {}).items():
            sio.on(event, handler, namespace=namespace)
        self.sockets.append(sio)
        await sio.connect(
            self.server.url,
            namespaces=[namespace],
            auth={"token": token} if token else None,
            transports=transports or ["websocket"],
            wait_timeout=5,
        )
        return sio

    async def close(self) -> None:
        for s in self.sockets:
            if s.connected:
                await s.disconnect()


async def close_pool(p: asyncpg.Pool) -> None:
    """Close a test's pool, or terminate it after 5 s (a pool behind a cut proxy never closes)."""
    try:
        await asyncio.wait_for(p.close(), 5)
    except TimeoutError:
        p.terminate()
