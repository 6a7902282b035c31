"""Clients that send what well-behaved libraries refuse to: raw HTTP bytes and raw Socket.IO
frames (a lone surrogate escape, 2,000 levels of nesting, an event that is not an array).

`RawSocket` speaks just enough Socket.IO v4 over one aiohttp websocket: namespace connect
(`40/ns,{auth}`), a raw event frame with an ack id (`42/ns,<id><anything>`), its ack
(`43/ns,<id>[...]`), and pongs (`2` -> `3`).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import orjson

GUARD = 15.0  # seconds: only stops a hang from passing


async def raw_http(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes, read the answer to EOF: (status, headers (lower-case names), body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), GUARD)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


class RawSocket:
    def __init__(self, session: aiohttp.ClientSession, url: str, namespace: str) -> None:
        self.session = session
        self.url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.ns = namespace
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._connected: asyncio.Future[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, token: str) -> None:
        self.ws = await self.session.ws_connect(self.url, compress=0, max_msg_size=0)
        first = await asyncio.wait_for(self.ws.receive_str(), GUARD)
        assert first.startswith("0"), first
        self._connected = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())
        await self.ws.send_str(f"40{self.ns}," + orjson.dumps({"token": token}).decode())
        await asyncio.wait_for(self._connected, GUARD)

    async def _read(self) -> None:
        assert self.ws is not None
        prefix = f"{self.ns},"
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data: str = msg.data
                if data == "2":
                    await self.ws.send_str("3")
                    continue
                kind, body = data[:2], data[2:]
                body = body.removeprefix(prefix)
                if kind == "40" and self._connected is not None and not self._connected.done():
                    self._connected.set_result(orjson.loads(body))
                elif kind == "43":
                    i = 0
                    while body[i].isdigit():
                        i += 1
                    fut = self._acks.pop(int(body[:i]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(orjson.loads(body[i:])[0])
        finally:
            self.closed.set()

    async def call_raw(self, body: str) -> Any:
        """Send `42/ns,<id>` + body exactly as given; the ack's payload."""
        assert self.ws is not None
        ack_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        await self.ws.send_str(f"42{self.ns},{ack_id}{body}")
        return await asyncio.wait_for(fut, GUARD)

    async def call(self, event: str, data: Any) -> Any:
        return await self.call_raw(orjson.dumps([event, data]).decode())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
