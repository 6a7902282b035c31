"""Engine.IO v4 on aiohttp: python-engineio's AsyncServer with its request handling rebuilt
to follow the protocol (https://socket.io/docs/v4/engine-io-protocol/), serving `Session`s
(pocho_rt/transport/session.py).

What upstream python-engineio 4.15's AsyncServer does differently (docs/TRANSPORT.md):

- `pingInterval` is advertised as `int(interval) * 1000` (300 ms becomes 0);
- a request without `transport` is taken as polling (the protocol says 400); a PUT is 405
  (aiohttp's route only had GET/POST/OPTIONS; the protocol says 400);
- clients are watched by a periodic sweep task (`monitor_clients`), off here: each session
  has its own ping timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import engineio
from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import translate_request

from pocho_rt.config import Settings
from pocho_rt.transport.session import Session, plain

log = logging.getLogger("pocho.transport")


def engine_options(settings: Settings) -> dict[str, Any]:
    """The Engine.IO options the server runs with (create_sio and the conformance mode)."""
    return {
        "async_mode": "aiohttp",
        "cors_allowed_origins": "*",
        "max_http_buffer_size": settings.max_socket_message_bytes,
        "http_compression": False,
        "ping_interval": settings.ping_interval,
        "ping_timeout": settings.ping_timeout,
        "logger": False,
    }


class Engine(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's AsyncServer serving `Session`s (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["monitor_clients"] = False  # per-session ping timers replace upstream's sweep
        super().__init__(**kwargs)
        self._tasks: set[asyncio.Task[Any]] = set()

    def attach(self, app: web.Application, engineio_path: str = "engine.io") -> None:
        # every method reaches handle_request: the protocol answers 400, aiohttp's router 405
        app.router.add_route("*", f"/{engineio_path.strip('/')}/", self.handle_request)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a close started by a timer; kept until done, awaited by shutdown."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, session: Session) -> None:
        if self.sockets.get(session.sid) is session:
            del self.sockets[session.sid]

    async def on_message(self, sid: str, data: str | bytes) -> None:
        handler = self.handlers.get("message")
        if handler is None:
            return
        try:
            await handler(sid, data)
        except Exception:  # one bad message must not end the session's reader
            log.exception("engine.io message handler failed")

    async def on_disconnect(self, sid: str, reason: Any) -> None:
        handler = self.handlers.get("disconnect")
        if handler is not None:
            try:
                await handler(sid, reason)
            except Exception:
                log.exception("engine.io disconnect handler failed")

    # ------------------------------------------------------------------ the upstream API

    async def send(self, sid: str, data: Any) -> None:
        session = self.sockets.get(sid)
        if session is not None:
            await session.send(eio_packet.Packet(eio_packet.MESSAGE, data=data))

    async def send_packet(self, sid: str, pkt: Any) -> None:
        session = self.sockets.get(sid)
        if session is not None:
            await session.send(pkt)

    async def disconnect(self, sid: str | None = None) -> None:
        sessions = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
        for session in sessions:
            if session is not None:
                await session.close(self.reason.SERVER_DISCONNECT)

    async def shutdown(self) -> None:
        await self.disconnect()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _get_socket(self, sid: str) -> Session:
        session = self.sockets.get(sid)
        if session is None or session.closed:
            raise KeyError("Session not found")
        return session  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ requests

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        cors = self._cors_environ(request)
        origin = cors.get("HTTP_ORIGIN")
        allowed = self._cors_allowed_origins(cors) if origin and self.cors_allowed_origins != [] else None
        headers = self._cors_headers(cors)
        if allowed is not None and origin not in allowed:
            return plain(400, "origin not allowed", headers)
        if request.method == "OPTIONS":
            return plain(200, "ok", headers)
        query = request.query
        transport = query.get("transport")
        sid = query.get("sid")
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if transport not in self.transports or (transport == "websocket") != websocket:
            return plain(400, "invalid transport", headers)  # upstream: a missing one was polling
        if sid is None and query.get("EIO") != "4":
            return plain(400, "unsupported protocol version", headers)
        if request.method not in ("GET", "POST"):
            return plain(400, "invalid method", headers)  # upstream: 405
        if sid is None:
            if request.method != "GET":
                return plain(400, "invalid method", headers)
            return await self._open(request, str(transport), headers)
        session: Session | None = self.sockets.get(sid)
        if session is None or (session.closed and not (request.method == "GET" and session.undelivered)):
            return plain(400, "invalid session", headers)
        if websocket:
            return await session.upgrade(request)
        if session.upgraded:
            return plain(400, "session upgraded", headers)
        if request.method == "GET":
            response = await session.handle_get()
        else:
            response = await session.handle_post(request)
        response.headers.extend(headers)
        return response

    @staticmethod
    def _cors_environ(request: web.Request) -> dict[str, str]:
        env = {"REQUEST_METHOD": request.method}
        for name, key in (
            ("Origin", "HTTP_ORIGIN"),
            ("Access-Control-Request-Headers", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
        ):
            value = request.headers.get(name)
            if value is not None:
                env[key] = value
        return env

    async def _open(self, request: web.Request, transport: str, headers: list[tuple[str, str]]) -> web.StreamResponse:
        """A new session (upstream `_handle_connect`, advertising sub-second ping settings)."""
        sid = self.generate_id()
        session = Session(self, sid)
        self.sockets[sid] = session
        open_packet = eio_packet.Packet(
            eio_packet.OPEN,
            {
                "sid": sid,
                "upgrades": ["websocket"] if transport == "polling" and self.allow_upgrades else [],
                "pingInterval": round(self.ping_interval * 1000),  # upstream: int(seconds) * 1000
                "pingTimeout": round(self.ping_timeout * 1000),
                "maxPayload": self.max_http_buffer_size,
            },
        )
        ret = await self._trigger_event("connect", sid, translate_request(request), run_async=False)
        if ret is not None and ret is not True:
            self.forget(session)
            return web.Response(status=401, text="unauthorized", headers=headers)
        if transport == "websocket":
            return await session.open_websocket(request, open_packet)
        session.connected = True
        session.start_heartbeat()
        response = web.Response(body=open_packet.encode().encode(), content_type="text/plain", charset="utf-8")
        response.headers.extend(headers)
        return response
