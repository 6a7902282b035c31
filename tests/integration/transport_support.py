"""Servers and raw clients for the transport tests: `pocho-rt conformance`'s servers on a free
port (fixtures `eio`, `sio`, `http`, imported by tests/integration/conftest.py), and helpers
reading Engine.IO and Socket.IO frames off a raw websocket or polling session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web

from pocho_rt.config import Settings
from pocho_rt.http.guard import make_runner
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.conformance import ENGINE, engineio_app, socketio_app
from pocho_rt.transport.engine import Engine

GUARD = 10.0  # seconds: only stops a hang from passing
RS = "\x1e"
Served = tuple[str, Engine]  # base URL of the endpoint, and its Engine


async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = make_runner(app, Settings(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await app[ENGINE].shutdown()  # pending polls are answered, websockets closed
        await runner.cleanup()


@pytest.fixture
async def eio() -> AsyncIterator[Served]:
    app = engineio_app(Settings())
    async for url in serve(app):
        yield f"{url}/engine.io/", app[ENGINE]


@pytest.fixture
async def sio() -> AsyncIterator[Served]:
    supervisor = Supervisor()
    app = socketio_app(Settings(), supervisor)
    async for url in serve(app):
        yield f"{url}/socket.io/", app[ENGINE]
    await supervisor.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=GUARD)) as s:
        yield s


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1)


async def http_get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()


async def http_post(http: aiohttp.ClientSession, url: str, body: str) -> tuple[int, str]:
    async with http.post(url, data=body.encode()) as r:
        return r.status, await r.text()


async def open_polling(http: aiohttp.ClientSession, base: str) -> tuple[str, dict[str, Any]]:
    """A polling session: (its URL, the OPEN packet's data)."""
    status, body = await http_get(http, base + "?EIO=4&transport=polling")
    assert status == 200 and body.startswith("0"), (status, body)
    handshake = orjson.loads(body[1:])
    return f"{base}?EIO=4&transport=polling&sid={handshake['sid']}", handshake


async def next_frame(ws: aiohttp.ClientWebSocketResponse, skip_pings: bool = True) -> Any:
    """The next frame's data (text or bytes); pings are skipped unless asked for."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), GUARD)
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            if skip_pings and msg.data == "2":
                continue
            return msg.data
        return msg.type


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """True once the server closes the websocket (every frame before is skipped)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), GUARD)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return True


async def sio_socket(
    http: aiohttp.ClientSession, base: str
) -> tuple[aiohttp.ClientWebSocketResponse, Callable[[], Awaitable[Any]]]:
    ws = await http.ws_connect(ws_url(base) + "?EIO=4&transport=websocket")
    assert (await next_frame(ws)).startswith("0")
    return ws, lambda: next_frame(ws)
