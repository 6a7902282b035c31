"""The python-socketio server on aiohttp, tuned per DESIGN "Performance rules"."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import deque
from typing import Any, Protocol

import orjson
import socketio
from engineio import packet as _eio_packet
from socketio import packet as _sio_packet

from engine.errors import EngineError
from pocho_rt.config import Settings
from pocho_rt.errors import error_ack
from pocho_rt.metrics import SOCKET_FLOW
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.engine import engine_options
from pocho_rt.transport.msgpack_parser import Frame, InvalidPacket
from pocho_rt.transport.sio import ConformantServer, Packet

log = logging.getLogger("pocho.sockets")


class _OrjsonModule:
    """The `json=` interface socketio expects (dumps/loads), backed by orjson."""

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return orjson.loads(data)


class _Flow:
    """One engine.io session's flow control: a token bucket for commands and the FIFO of
    packets waiting for that session's one handler task."""

    __slots__ = ("backlog", "draining", "room", "stamp", "tokens")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now
        self.backlog: deque[Any] = deque()
        self.draining = False
        self.room = asyncio.Event()  # set when the backlog shrinks

    def take(self, rate: float, burst: int, now: float) -> bool:
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# Events with a rate rule of their own, never refused for rate (PROTOCOL-NOTES "Riders": rider
# pings are coalesced to one per 250 ms, nothing is refused): no token bucket, and a full
# backlog holds the reader back (TCP backpressure) instead of refusing.
UNMETERED_EVENTS = frozenset({"location"})

# type, optional attachment count, namespace, ack id of a Socket.IO packet (what can be read
# of a frame whose JSON cannot be)
_HEADER = re.compile(r"^(\d)(?:\d+-)?(/[^,]*)?,?(\d+)?")


class RemoteRooms(Protocol):
    """Members of rooms on other nodes (pocho_rt.cluster_runtime)."""

    def forward(self, namespace: str, to: str | list[str], text: str) -> None:
        """Queue an emit's encoded frame for the other nodes with members of `to`."""
        ...


class GuardedServer(ConformantServer):
    """python-socketio's server with the guards stock python-socketio/engine.io lack:

    - an engine.io session that has not joined a namespace within `connect_timeout` is
      closed (DESIGN "Transport facts": otherwise it holds a connection for free);
    - flow control per session (issue 14): engine.io's reader hands every packet over and
      goes back to reading at once, so a PONG is never stuck behind commands (a socket that
      floods is not dropped for "missing" pings); a token bucket (`command_rate`/s, up to
      `command_burst`) and a bounded backlog (`backlog` commands) answer `rate_limited` at
      once past them (`UNMETERED_EVENTS` excepted); one task per busy session handles its
      packets in order, one at a time (PROTOCOL-NOTES: commands in the order sent);
    - a frame whose JSON cannot be read (a lone surrogate escape, nesting deeper than
      orjson's 1024 levels) or that is not an event array is answered `invalid` on its ack
      id instead of being dropped with a traceback; without an ack id to answer on, the
      session is closed, as the Socket.IO protocol asks of an invalid packet (issue 13).
    """

    def __init__(
        self,
        *args: Any,
        supervisor: Supervisor,
        connect_timeout: float = 10.0,
        command_rate: float | None = 20.0,
        command_burst: int = 60,
        backlog: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout
        self.supervisor = supervisor
        self.command_rate = command_rate
        self.command_burst = command_burst
        self.backlog = backlog
        self._flows: dict[str, _Flow] = {}
        self.remote: RemoteRooms | None = None  # rooms' members on other nodes (set by the cluster)

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

    # ------------------------------------------------------------------ flow control

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """engine.io's reader calls this for every Socket.IO packet and awaits it: decide at
        once (refuse, or queue for this session's handler task) and return."""
        try:
            pkt = self._assemble(eio_sid, data)  # None: binary attachments still due
        except Exception as exc:  # any undecodable frame gets the same answer
            await self._unreadable(eio_sid, data, exc)
            return
        if pkt is None:
            return
        if pkt.packet_type == _sio_packet.EVENT:
            if not isinstance(pkt.data, list) or not pkt.data or not isinstance(pkt.data[0], str):
                SOCKET_FLOW.labels("invalid").inc()
                if pkt.id is None:
                    await self._drop(eio_sid)
                    return
                await self._refuse(eio_sid, pkt, EngineError("invalid", "an event is [name, payload]"))
                return
        elif pkt.packet_type not in _HANDLED:
            SOCKET_FLOW.labels("invalid").inc()
            log.warning("unsupported socket packet", extra={"type": pkt.packet_type})
            await self._drop(eio_sid)
            return
        loop = asyncio.get_running_loop()
        flow = self._flows.get(eio_sid)
        if flow is None:
            flow = self._flows[eio_sid] = _Flow(self.command_burst, loop.time())
        if pkt.packet_type == _sio_packet.EVENT and pkt.data[0] in UNMETERED_EVENTS:
            while len(flow.backlog) >= self.backlog and eio_sid in self._flows:
                flow.room.clear()  # backpressure, as before flow control: TCP holds the rest
                await flow.room.wait()
        elif pkt.packet_type == _sio_packet.EVENT:
            rate = self.command_rate
            if rate is not None and not flow.take(rate, self.command_burst, loop.time()):
                SOCKET_FLOW.labels("rate").inc()
                wait = max(1, math.ceil((1.0 - flow.tokens) / rate))
                await self._refuse(
                    eio_sid,
                    pkt,
                    EngineError(
                        "rate_limited",
                        f"more than {rate:g} commands a second",
                        {"limit": "socket_commands", "retryAfter": wait},
                    ),
                )
                return
            if len(flow.backlog) >= self.backlog:
                SOCKET_FLOW.labels("backlog").inc()
                await self._refuse(
                    eio_sid,
                    pkt,
                    EngineError(
                        "rate_limited",
                        f"more than {self.backlog} commands waiting on this connection",
                        {"limit": "socket_backlog", "retryAfter": 1},
                    ),
                )
                return
        flow.backlog.append(pkt)
        if not flow.draining:
            flow.draining = True
            self.supervisor.spawn(self._drain(eio_sid, flow), name="socket-commands")

    async def _drain(self, eio_sid: str, flow: _Flow) -> None:
        """This session's packets, in order, one at a time."""
        try:
            while flow.backlog:
                pkt = flow.backlog.popleft()
                flow.room.set()
                try:
                    await self._dispatch(eio_sid, pkt)
                except Exception as exc:  # one bad packet must not end the session's handling
                    log.warning("socket packet failed", extra={"type": pkt.packet_type, "error": type(exc).__name__})
        finally:
            flow.draining = False

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: list[Any]) -> None:
        """Upstream's, in one frame when a namespace class handles the event (ours always do):
        no handler lookup chain, no ack Packet, the ack encoded once by orjson (issue 12)."""
        namespace = namespace or "/"
        handler = self.namespace_handlers.get(namespace)
        if handler is None or self.handlers:  # plain `on()` handlers (relays, tests): upstream's path
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if not self.manager.is_connected(sid, namespace):
            return
        r = await handler.trigger_event(data[0], sid, *data[1:])
        if id is None or r is self.not_handled:
            return
        ack = [] if r is None else list(r) if isinstance(r, tuple) else [r]
        session = self.eio.sockets.get(eio_sid)
        if session is None:
            return
        if session.repack is None:  # JSON (a MessagePack session packs the values: `_send_packet`)
            try:
                text = orjson.dumps(ack).decode()
            except TypeError:  # bytes in the answer: upstream's packet, which sends them as attachments
                pass
            else:
                await session.send_message(f"3{namespace},{id}{text}" if namespace != "/" else f"3{id}{text}")
                return
        await self._send_packet(eio_sid, self.packet_class(_sio_packet.ACK, namespace=namespace, id=id, data=ack))

    async def _dispatch(self, eio_sid: str, pkt: Any) -> None:
        kind = pkt.packet_type
        if kind == _sio_packet.EVENT:
            await self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        elif kind == _sio_packet.CONNECT:
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind == _sio_packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        else:  # ACK
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        flow = self._flows.pop(eio_sid, None)
        if flow is not None:
            flow.backlog.clear()  # nobody is left to answer
            flow.room.set()
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _refuse(self, eio_sid: str, pkt: Any, error: EngineError) -> None:
        """Answer an event on its ack id without handling it (no ack id: nothing to answer)."""
        namespace = pkt.namespace or "/"
        if pkt.id is None or not self.manager.sid_from_eio_sid(eio_sid, namespace):
            return
        await self._send_packet(
            eio_sid, self.packet_class(_sio_packet.ACK, namespace=namespace, id=pkt.id, data=[error_ack(error)])
        )

    async def _unreadable(self, eio_sid: str, data: Any, exc: Exception) -> None:
        SOCKET_FLOW.labels("invalid").inc()
        log.warning("unreadable socket frame", extra={"error": type(exc).__name__, "bytes": len(data or "")})
        if isinstance(exc, InvalidPacket):  # socket.io-msgpack-parser
            ack_id, namespace = exc.ack_id, exc.namespace
            error = EngineError("invalid", f"not a valid MessagePack packet: {exc}")
        else:
            m = _HEADER.match(data) if isinstance(data, str) else None
            if m is not None and int(m.group(1)) == _sio_packet.EVENT and m.group(3) is not None:
                ack_id, namespace = int(m.group(3)), m.group(2)
            else:
                ack_id, namespace = None, None
            error = EngineError("invalid", "the payload is not valid JSON (UTF-8, nesting)")
        if ack_id is None:
            await self._drop(eio_sid)  # nothing to answer on
            return
        await self._refuse(eio_sid, self.packet_class(_sio_packet.EVENT, namespace=namespace, id=ack_id), error)

    # ------------------------------------------------------------------ shutdown

    async def hang_up_all(self) -> None:
        """Close every session and its transport (shutdown): aiohttp waits for open websocket
        handlers before it runs cleanup, so they must end first."""
        for eio_sid in list(self.eio.sockets):
            await self._drop(eio_sid)
        await self.shutdown()

    async def _drop(self, eio_sid: str) -> None:
        """Close the session and its transport (the Engine closes both)."""
        await self.eio.disconnect(eio_sid)


_HANDLED = (_sio_packet.EVENT, _sio_packet.CONNECT, _sio_packet.DISCONNECT, _sio_packet.ACK)


def create_sio(
    settings: Settings,
    supervisor: Supervisor,
    manager: socketio.AsyncManager | None = None,
    server_class: type[GuardedServer] = GuardedServer,
) -> GuardedServer:
    server = server_class(
        supervisor=supervisor,
        connect_timeout=settings.socket_connect_timeout,
        # RATE_LIMIT_ENABLED=false (benchmarks) turns the bucket off; the backlog bound stays.
        command_rate=settings.socket_command_rate if settings.rate_limit_enabled else None,
        command_burst=settings.socket_command_burst,
        backlog=settings.socket_backlog,
        msgpack=settings.socket_msgpack,
        client_manager=manager,
        serializer=Packet,
        json=_OrjsonModule,
        # Handle each connection's events in its own reader, in order, without a task per
        # event (~9% CPU, DESIGN); an ask is bounded by the ask timeout, far below ping timeout.
        async_handlers=False,
        logger=False,
        engineio_logger=False,
        **{k: v for k, v in engine_options(settings).items() if k != "logger"},
    )
    # With logger=False both libraries give their logger a plain StreamHandler of its own, which
    # prints raw tracebacks next to our JSON lines: let their records reach the JSON root only.
    for lib_logger in (server.logger, server.eio.logger):
        lib_logger.handlers.clear()
    return server


def event_frame(event: str, payload_json: str, namespace: str) -> Any:
    """An engine.io MESSAGE frame for a socket.io EVENT, from an already-encoded payload.

    Wire format (Socket.IO v4): `2<namespace>,["<event>",<payload>]`; event names are ours
    (no quotes or backslashes), so no escaping is needed.
    """
    return Frame(_eio_packet.MESSAGE, f'2{namespace},["{event}",{payload_json}]')


async def emit_frame(sio: socketio.AsyncServer, frame: Any, to: str | list[str], namespace: str) -> int:
    """Queue one encoded frame on every member of the rooms: here, and through the cluster on
    the other nodes that have members. Returns the number of local recipients."""
    remote = sio.remote if isinstance(sio, GuardedServer) else None
    if remote is not None:
        remote.forward(namespace, to, frame.data)
    return await emit_local(sio, frame, to, namespace)


async def emit_local(sio: socketio.AsyncServer, frame: Any, to: str | list[str], namespace: str) -> int:
    """Queue one encoded frame on every local member of the rooms; no task per recipient.

    python-socketio's manager creates a task per recipient and re-encodes per emit; each
    engine.io socket already has its own ordered send queue, so queuing directly is enough.
    """
    n = 0
    for _sid, eio_sid in sio.manager.get_participants(namespace, to):
        await sio.eio.send_packet(eio_sid, frame)
        n += 1
    return n
