"""A minimal Socket.IO v4 client over one aiohttp websocket, for load generation only.

The official Python client spends more CPU per message than the server under test, so a
benchmark driven by it would measure the client. This speaks just what the harness needs
(namespace connect, emit with ack, events, ping/pong) per the Socket.IO v4 / Engine.IO v4
wire format: `40/ns,{auth}`, `42/ns,id[...]`, `43/ns,id[...]`, `2` -> `3`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson


class LiteClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, namespace: str) -> None:
        self.session = session
        self.url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.ns = namespace
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.handlers: dict[str, Callable[[Any], None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[Any] | None = None

    async def connect(self, auth: dict[str, Any]) -> None:
        self._ws = await self.session.ws_connect(self.url, compress=0, max_msg_size=0)
        first = await self._ws.receive_str()
        assert first.startswith("0"), first
        self._connected = asyncio.get_running_loop().create_future()
        await self._ws.send_str(f"40{self.ns}," + orjson.dumps(auth).decode())
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(self._connected, 10)

    async def _read(self) -> None:
        try:
            await self._read_frames()
        finally:  # connection gone: nobody will answer the calls in flight
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self._acks.clear()

    async def _read_frames(self) -> None:
        assert self._ws is not None
        prefix = f"{self.ns},"
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            if data == "2":
                await self._ws.send_str("3")
                continue
            kind = data[:2]
            body = data[2:]
            if body.startswith(prefix):
                body = body[len(prefix) :]
            if kind == "40" and self._connected and not self._connected.done():
                self._connected.set_result(orjson.loads(body))
            elif kind == "44" and self._connected and not self._connected.done():
                self._connected.set_exception(ConnectionError(body))
            elif kind == "43":
                i = 0
                while body[i].isdigit():
                    i += 1
                fut = self._acks.pop(int(body[:i]), None)
                if fut is not None and not fut.done():
                    fut.set_result(orjson.loads(body[i:])[0])
            elif kind == "42":
                name, *args = orjson.loads(body)
                handler = self.handlers.get(name)
                if handler is not None:
                    handler(args[0] if args else None)

    async def call(self, event: str, data: Any, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        assert self._ws is not None
        self._next_id += 1
        ack_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._reader is None or self._reader.done():
            raise ConnectionError("not connected")
        self._acks[ack_id] = fut
        await self._ws.send_str(f"42{self.ns},{ack_id}" + orjson.dumps([event, data]).decode())
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
