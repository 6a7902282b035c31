"""One Engine.IO v4 session over aiohttp (https://socket.io/docs/v4/engine-io-protocol/):
polling, websocket, or polling upgraded to websocket; it replaces python-engineio's
AsyncSocket, spending nothing per message beyond the frame itself.

What upstream python-engineio 4.15's AsyncSocket does differently (docs/TRANSPORT.md):

- ping timeouts are found by a periodic sweep over every socket (`_service_task`) and by
  `asyncio.wait_for` around every received websocket message (~16% CPU in the relay
  profile); here each session has one timer handle, re-armed by its pongs;
- a polling POST answers `OK` (the protocol's body is `ok`); an invalid packet in it is
  logged and the session kept (the protocol closes it); a second concurrent GET is queued
  behind the first (the protocol closes the session); after the client's CLOSE the pending
  GET is never answered;
- after an upgrade the NOOP that ends the pending poll is queued and later sent over the
  new websocket ahead of the next message; a second websocket for an upgraded sid gets an
  HTTP 400 instead of being opened and closed;
- every websocket has a queue and a writer task, and frames go through aiohttp's writer;
  here a send writes the frame to the transport at once (ordered, no task) and never
  waits: a reader more than `SLOW_READER_BYTES` behind is closed instead;
- a polling session that stops polling is closed with `close(wait=True)`, which waits for
  its queue to drain forever; here closing never waits on the peer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from aiohttp import WSMsgType, web
from engineio import packet as eio_packet

if TYPE_CHECKING:
    from pocho_rt.transport.engine import Engine

log = logging.getLogger("pocho.transport")

# How long a closing websocket waits for the peer's close frame (aiohttp's default is 10 s,
# so a silent peer closed at ping interval + timeout stayed open 10 s longer).
CLOSE_HANDSHAKE_SECONDS = 1.0
# A websocket opened to upgrade a polling session must finish the probe within this (the
# Node server's `upgradeTimeout`); otherwise it holds a connection for free.
UPGRADE_TIMEOUT_SECONDS = 10.0
_SEP = "\x1e"  # record separator between packets of a polling payload
# A websocket client that leaves this much unread in our send buffer is closed: a send never
# waits for one slow reader (a broadcast would wait with it), and its buffer stays bounded.
SLOW_READER_BYTES = 1 << 20


def _frame_header(opcode: int, size: int) -> bytes:
    """A server websocket frame's header (FIN set, unmasked; RFC 6455 section 5.2)."""
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


def plain(status: int, body: str, headers: list[tuple[str, str]] | None = None) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/plain", headers=headers)


class Session:
    """One Engine.IO session: polling, websocket, or polling upgraded to websocket."""

    __slots__ = (
        "_buffer",
        "_noop_next_poll",
        "_poll",
        "_reader",
        "_timer",
        "_transport",
        "closed",
        "closing",
        "connected",
        "parser",
        "repack",
        "server",
        "session",
        "sid",
        "upgraded",
        "upgrading",
        "ws",
    )

    def __init__(self, server: Engine, sid: str) -> None:
        self.server = server
        self.sid = sid
        self.session: dict[str, Any] = {}  # upstream's per-session user dict
        self.connected = False
        self.upgrading = False
        self.upgraded = False
        self.closing = False
        self.closed = False
        self.ws: web.WebSocketResponse | None = None
        self._transport: asyncio.Transport | None = None  # set while the websocket carries packets
        self._reader: asyncio.Task[Any] | None = None  # the task reading the websocket
        self._buffer: list[Any] = []  # packets waiting for a poll (or for the upgrade to finish)
        self._poll: asyncio.Future[list[Any]] | None = None  # the pending GET
        self._noop_next_poll = False
        self._timer: asyncio.TimerHandle | None = None
        # Chosen by the Socket.IO layer from the first packet: "json" or "msgpack"; a msgpack
        # session's `repack` turns the text MESSAGEs sent to it into its own format.
        self.parser: Literal["json", "msgpack"] | None = None
        self.repack: Callable[[Any], Any] | None = None

    # ------------------------------------------------------------------ heartbeat

    def start_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.server.ping_interval, self._ping)

    def _ping(self) -> None:
        if self.closing:
            return
        self._send_now(eio_packet.Packet(eio_packet.PING))
        self._timer = asyncio.get_running_loop().call_later(self.server.ping_timeout, self._ping_timed_out)

    def _pong(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.server.ping_interval, self._ping)

    def _ping_timed_out(self) -> None:
        self.server.spawn(self.close(self.server.reason.PING_TIMEOUT, notify=False))

    # ------------------------------------------------------------------ sending

    def _send_now(self, pkt: Any) -> None:
        """Write the packet to the websocket, or hand it to the pending poll, or buffer it."""
        if self.repack is not None and pkt.packet_type == eio_packet.MESSAGE:
            pkt = self.repack(pkt)
            if pkt is None:  # binary attachments still due
                return
        transport = self._transport
        if transport is not None:
            if not transport.is_closing():
                data = pkt.encode()
                if isinstance(data, str):
                    raw = data.encode()
                    transport.write(_frame_header(0x1, len(raw)) + raw)
                else:
                    transport.write(_frame_header(0x2, len(data)) + data)
                self._check_backlog(transport)
            return
        self._buffer.append(pkt)
        poll = self._poll
        if poll is not None and not poll.done() and not self.upgrading:
            poll.set_result(self._take())

    def _check_backlog(self, transport: asyncio.Transport) -> None:
        if transport.get_write_buffer_size() > SLOW_READER_BYTES and not self.closing:
            log.warning("websocket reader too slow, closing", extra={"buffered": transport.get_write_buffer_size()})
            self.server.spawn(self.close(self.server.reason.TRANSPORT_ERROR, notify=False))

    async def send(self, pkt: Any) -> None:
        """Send one packet (upstream's AsyncSocket.send, without the queue and writer task)."""
        if not self.closed:
            self._send_now(pkt)

    async def send_message(self, text: str) -> None:
        """Send a text MESSAGE (a Socket.IO packet): over the websocket, straight to the
        transport with no Packet object; otherwise as `send` does."""
        transport = self._transport
        if transport is None or self.closed or self.repack is not None:
            await self.send(eio_packet.Packet(eio_packet.MESSAGE, data=text))
        elif not transport.is_closing():
            raw = ("4" + text).encode()
            transport.write(_frame_header(0x1, len(raw)) + raw)
            self._check_backlog(transport)

    @property
    def polling(self) -> bool:
        """A GET waits for packets."""
        return self._poll is not None

    @property
    def undelivered(self) -> bool:
        """Packets wait for the next poll (after a close: the CLOSE packet)."""
        return bool(self._buffer)

    def _take(self) -> list[Any]:
        packets, self._buffer = self._buffer, []
        return packets

    # ------------------------------------------------------------------ receiving

    async def receive(self, data: str | bytes) -> bool:
        """Handle one Engine.IO packet from the client; False: invalid, close the session."""
        if isinstance(data, bytes):
            await self.server.on_message(self.sid, data)
            return True
        kind = data[:1]
        if kind == "4":
            await self.server.on_message(self.sid, data[1:])
        elif kind == "3":
            self._pong()
        elif kind == "b":  # base64 binary (polling)
            try:
                raw = base64.b64decode(data[1:], validate=True)
            except ValueError:
                return False
            await self.server.on_message(self.sid, raw)
        elif kind == "1":
            await self.close(self.server.reason.CLIENT_DISCONNECT, notify=False)
        elif kind != "6":  # NOOP is ignored; anything else is not a client packet
            return False
        return True

    # ------------------------------------------------------------------ polling

    async def handle_get(self) -> web.Response:
        if self._poll is not None:  # a second concurrent GET: the protocol closes the session
            await self.close(self.server.reason.TRANSPORT_ERROR)
            return plain(400, "duplicate poll")
        if self.upgrading or self._noop_next_poll:  # the poll that ends polling before an upgrade
            self._noop_next_poll = False
            return self._payload([eio_packet.Packet(eio_packet.NOOP)])
        if self._buffer:
            return self._payload(self._take())
        if self.closed:
            return plain(400, "session closed")
        poll = self._poll = asyncio.get_running_loop().create_future()
        try:
            packets = await poll
        finally:
            self._poll = None
        return self._payload(packets)

    def _payload(self, packets: list[Any]) -> web.Response:
        body = _SEP.join(p.encode(b64=True) for p in packets)
        if self.closed and not self._buffer:
            self.server.forget(self)  # the CLOSE (or NOOP) was the last thing to deliver
        return web.Response(body=body.encode(), content_type="text/plain", charset="utf-8")

    async def handle_post(self, request: web.Request) -> web.Response:
        length = request.content_length
        if length is not None and length > self.server.max_http_buffer_size:
            await self.close(self.server.reason.TRANSPORT_ERROR, notify=False)
            return plain(413, "payload too large")
        try:
            body = (await request.content.read(self.server.max_http_buffer_size + 1)).decode()
            if len(body) > self.server.max_http_buffer_size:
                raise ValueError("payload too large")
        except (ValueError, ConnectionError):  # UnicodeDecodeError is a ValueError
            await self.close(self.server.reason.TRANSPORT_ERROR, notify=False)
            return plain(400, "invalid payload")
        for data in body.split(_SEP):
            if self.closing:
                break
            if not data or not await self.receive(data):
                await self.close(self.server.reason.TRANSPORT_ERROR, notify=False)
                return plain(400, "invalid packet")
        return plain(200, "ok")

    # ------------------------------------------------------------------ websocket

    def _websocket(self) -> web.WebSocketResponse:
        return web.WebSocketResponse(
            compress=False,  # per-message deflate costs ~18% CPU on our tiny frames (DESIGN)
            max_msg_size=self.server.max_http_buffer_size,
            timeout=CLOSE_HANDSHAKE_SECONDS,
        )

    def _carry(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        """From now on the websocket carries this session's packets."""
        self.ws = ws
        self._transport = cast(asyncio.Transport, request.transport)  # aiohttp types it BaseTransport
        for pkt in self._take():
            self._send_now(pkt)

    async def open_websocket(self, request: web.Request, open_packet: Any) -> web.WebSocketResponse:
        """A session that starts on a websocket."""
        ws = self._websocket()
        await ws.prepare(request)
        self.connected = self.upgraded = True
        self._buffer.insert(0, open_packet)
        self._carry(ws, request)
        self.start_heartbeat()
        await self._read(ws)
        return ws

    async def upgrade(self, request: web.Request) -> web.WebSocketResponse:
        """A websocket for a polling session: probe (`2probe` -> `3probe`), then `5`."""
        ws = self._websocket()
        await ws.prepare(request)
        if self.upgrading or self.upgraded or self.closing:
            await ws.close()  # the protocol opens and closes it (upstream answered HTTP 400)
            return ws
        self.upgrading = True
        self.ws = ws  # a close meanwhile (ping timeout, server) closes the probing websocket too
        try:
            async with asyncio.timeout(UPGRADE_TIMEOUT_SECONDS):
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT or msg.data != "2probe" or self.closing:
                    raise ValueError("no probe")
                await ws.send_str("3probe")
                # End the pending poll with a NOOP now (upstream queued it and sent it over the
                # websocket after the upgrade, ahead of the next message); a later poll gets one too.
                if self._poll is not None and not self._poll.done():
                    self._poll.set_result([eio_packet.Packet(eio_packet.NOOP)])
                else:
                    self._noop_next_poll = True
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT or msg.data != "5" or self.closing:
                    raise ValueError("no upgrade")
        except (TimeoutError, ValueError):
            self.upgrading = False
            self.ws = None
            self._noop_next_poll = False
            await ws.close()
            if self._buffer and self._poll is not None and not self._poll.done():
                self._poll.set_result(self._take())
            return ws
        self.upgraded = True
        self.upgrading = False
        self._noop_next_poll = False
        self._carry(ws, request)
        await self._read(ws)
        return ws

    async def _read(self, ws: web.WebSocketResponse) -> None:
        """Read packets until the websocket ends; no timeout per message (the ping timer
        closes a silent peer)."""
        on_message = self.server.on_message
        self._reader = asyncio.current_task()
        try:
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    data = msg.data
                    if data[:1] == "4":  # the common case first: a message
                        await on_message(self.sid, data[1:])
                    elif not data or not await self.receive(data):
                        await self.close(self.server.reason.TRANSPORT_ERROR)
                        break
                elif msg.type == WSMsgType.BINARY:
                    await self.receive(msg.data)
                else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over max_msg_size)
                    break
                if self.closing:
                    break
        finally:
            await self.close(self.server.reason.TRANSPORT_CLOSE, notify=False)

    # ------------------------------------------------------------------ closing

    async def close(self, reason: Any = None, *, notify: bool = True) -> None:
        """End the session: the application hears `disconnect` once, a pending poll is
        answered, the websocket is closed; nothing waits on the peer beyond the short close
        handshake. `notify`: tell the client with a CLOSE packet (server-initiated close)."""
        if self.closing:
            return
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.server.on_disconnect(self.sid, reason or self.server.reason.SERVER_DISCONNECT)
        finally:
            if notify:
                self._send_now(eio_packet.Packet(eio_packet.CLOSE))
            self.closed = True
            poll = self._poll
            if poll is not None and not poll.done():
                poll.set_result(self._take() or [eio_packet.Packet(eio_packet.NOOP)])
            if not notify or self.ws is not None or not self._buffer:
                self._buffer.clear()
                self.server.forget(self)
            else:  # polling, told nothing yet: the next GET gets the CLOSE, or it is forgotten soon
                asyncio.get_running_loop().call_later(
                    self.server.ping_interval + self.server.ping_timeout, self.server.forget, self
                )
            self._transport = None
            if self.ws is None:
                pass
            elif asyncio.current_task() is self._reader:
                await self.ws.close()  # the reader ends with this session
            else:  # never wait here for a peer's close frame (shutdown closes thousands)
                self.server.spawn(self.ws.close())
