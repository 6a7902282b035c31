"""The python-socketio server on aiohttp, tuned per DESIGN "Performance rules"."""

from __future__ import annotations

import functools
from typing import Any

import engineio.async_drivers.aiohttp as _eio_aiohttp
import orjson
import socketio
from aiohttp import web

from pocho_rt.config import Settings

# engine.io builds WebSocketResponse with aiohttp's default compress=True, which costs
# ~18% CPU on our tiny frames (DESIGN); the driver looks the class up by module name.
_eio_aiohttp.WebSocketResponse = functools.partial(web.WebSocketResponse, compress=False)


class _OrjsonModule:
    """The `json=` interface socketio expects (dumps/loads), backed by orjson."""

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return orjson.loads(data)


def create_sio(settings: Settings) -> socketio.AsyncServer:
    return socketio.AsyncServer(
        async_mode="aiohttp",
        json=_OrjsonModule,
        cors_allowed_origins="*",
        max_http_buffer_size=settings.max_socket_message_bytes,
        http_compression=False,
        ping_interval=25,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
