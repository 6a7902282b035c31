"""The python-socketio server on aiohttp, tuned per DESIGN "Performance rules"."""

from __future__ import annotations

import functools
from typing import Any

import engineio.async_drivers.aiohttp as _eio_aiohttp
import orjson
import socketio
from aiohttp import web
from engineio import packet as _eio_packet
from socketio import packet as _sio_packet

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
        # Handle each connection's events in its own reader, in order, without a task per
        # event (~9% CPU, DESIGN); an ask is bounded by the ask timeout, far below ping timeout.
        async_handlers=False,
        ping_interval=25,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )


async def emit_once(sio: socketio.AsyncServer, event: str, data: Any, to: str | list[str], namespace: str) -> int:
    """Emit to local members of rooms: encoded once, queued on each socket, no task per recipient.

    python-socketio's manager creates a task per recipient; each engine.io socket already
    has its own send queue, so queuing directly keeps order and costs one encode.
    Returns the number of recipients.
    """
    members = list(sio.manager.get_participants(namespace, to))
    if not members:
        return 0
    encoded = sio.packet_class(_sio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
    pkt = _eio_packet.Packet(_eio_packet.MESSAGE, encoded)
    for _sid, eio_sid in members:
        await sio.eio.send_packet(eio_sid, pkt)
    return len(members)
