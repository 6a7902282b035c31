"""The python-socketio server on aiohttp, tuned per DESIGN "Performance rules"."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import engineio.async_drivers.aiohttp as _eio_aiohttp
import orjson
import socketio
from aiohttp import web
from engineio import packet as _eio_packet
from socketio import packet as _sio_packet

from pocho_rt.config import Settings
from pocho_rt.tasks import Supervisor


# engine.io builds WebSocketResponse with aiohttp's default compress=True, which costs
# ~18% CPU on our tiny frames (DESIGN); see _websocket_response below.
def _websocket_response(receive_timeout: float) -> None:
    """engine.io builds its WebSocketResponse by module name: no per-message deflate, and a
    receive timeout so a websocket that goes silent (e.g. opens an upgrade and never
    finishes it, which stock engine.io waits on forever) is closed. A live client sends a
    pong every ping interval, so ping interval + ping timeout is the natural bound."""
    _eio_aiohttp.WebSocketResponse = functools.partial(
        web.WebSocketResponse, compress=False, receive_timeout=receive_timeout
    )


class _OrjsonModule:
    """The `json=` interface socketio expects (dumps/loads), backed by orjson."""

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return orjson.loads(data)


class _TextPacket(_sio_packet.Packet):  # type: ignore[misc]
    """Our payloads are JSON only: skip the recursive scan for binary attachments (~7% CPU)."""

    uses_binary_events = False


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """Closes an engine.io session that has not joined a namespace within `connect_timeout`.

    Stock python-engineio has no such timeout (DESIGN "Transport facts"): without it, an
    open session that never sends the namespace CONNECT holds a connection for free.
    """

    def __init__(self, *args: Any, supervisor: Supervisor, connect_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout
        self.supervisor = supervisor

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        result = await super()._handle_eio_connect(eio_sid, environ)
        asyncio.get_running_loop().call_later(self.connect_timeout, self._check_joined, eio_sid)
        return result

    def _check_joined(self, eio_sid: str) -> None:
        if eio_sid not in self.environ:  # already gone
            return
        joined = any(self.manager.sid_from_eio_sid(eio_sid, ns) for ns in list(self.manager.rooms))
        if not joined:
            self.supervisor.spawn(self._drop(eio_sid), name="drop-unjoined")

    async def hang_up_all(self) -> None:
        """Close every session and its transport (shutdown): aiohttp waits for open websocket
        handlers before it runs cleanup, so they must end first."""
        for eio_sid in list(self.eio.sockets):
            await self._drop(eio_sid)
        await self.shutdown()

    async def _drop(self, eio_sid: str) -> None:
        """Close the session and its transport: a CLOSE packet alone waits for the client."""
        socket = self.eio.sockets.get(eio_sid)
        await self.eio.disconnect(eio_sid)
        if socket is not None:
            socket.queue.put_nowait(None)  # ends engine.io's writer, which closes the websocket


def create_sio(settings: Settings, supervisor: Supervisor) -> GuardedServer:
    _websocket_response(settings.ping_interval + settings.ping_timeout)
    return GuardedServer(
        supervisor=supervisor,
        connect_timeout=settings.socket_connect_timeout,
        async_mode="aiohttp",
        serializer=_TextPacket,
        json=_OrjsonModule,
        cors_allowed_origins="*",
        max_http_buffer_size=settings.max_socket_message_bytes,
        http_compression=False,
        # Handle each connection's events in its own reader, in order, without a task per
        # event (~9% CPU, DESIGN); an ask is bounded by the ask timeout, far below ping timeout.
        async_handlers=False,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        logger=False,
        engineio_logger=False,
    )


def event_frame(event: str, payload_json: str, namespace: str) -> Any:
    """An engine.io MESSAGE frame for a socket.io EVENT, from an already-encoded payload.

    Wire format (Socket.IO v4): `2<namespace>,["<event>",<payload>]`; event names are ours
    (no quotes or backslashes), so no escaping is needed.
    """
    return _eio_packet.Packet(_eio_packet.MESSAGE, f'2{namespace},["{event}",{payload_json}]')


async def emit_frame(sio: socketio.AsyncServer, frame: Any, to: str | list[str], namespace: str) -> int:
    """Queue one encoded frame on every local member of the rooms; no task per recipient.

    python-socketio's manager creates a task per recipient and re-encodes per emit; each
    engine.io socket already has its own ordered send queue, so queuing directly is enough.
    Returns the number of recipients.
    """
    n = 0
    for _sid, eio_sid in sio.manager.get_participants(namespace, to):
        await sio.eio.send_packet(eio_sid, frame)
        n += 1
    return n
