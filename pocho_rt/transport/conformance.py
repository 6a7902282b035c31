"""`pocho-rt conformance`: the official protocol suites' test servers on our transport stack.

socketio/socket.io-protocol `test-suite` expects namespaces `/` and `/custom` that emit
`auth` with the CONNECT payload, echo `message` as `message-back` and ack
`message-with-ack` with its arguments; socketio/engine.io-protocol `test-suite` expects a
bare Engine.IO server at `/engine.io/` echoing every message. Both expect ping interval
300 ms, ping timeout 200 ms and maxPayload 1,000,000. docs/TRANSPORT.md has the commands.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from typing import Any

from aiohttp import web

from pocho_rt.config import Settings
from pocho_rt.http.guard import make_runner
from pocho_rt.sockets.server import GuardedServer, create_sio
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.engine import Engine, engine_options

SUITE_NAMESPACES = ("/", "/custom")
ENGINE = web.AppKey("engine", Engine)  # the app's Engine, for tests that look at its sessions
SIO = web.AppKey("sio", GuardedServer)  # the socket.io suite app's server, for tests that drive it
AUTH_SPACING = 0.01


def suite_settings(settings: Settings) -> Settings:
    """The settings both suites assert in the handshake."""
    return replace(
        settings,
        ping_interval=0.3,
        ping_timeout=0.2,
        max_socket_message_bytes=1_000_000,
        socket_connect_timeout=1.0,  # the suite's reference server: connectTimeout 1000 ms
    )


class _SuiteServer(GuardedServer):
    """Emits `auth` right after the namespace CONNECT answer (the suite expects it second).

    The suite's client (ws 8.5) emits every frame of one TCP read synchronously, before the
    test's next `waitFor` listener exists, so of two frames read together the second is
    lost. The Node server writes its next packet only after the previous write's callback;
    on this shared 2-core machine that spacing is not enough for Python either, so `auth`
    follows the CONNECT answer `AUTH_SPACING` seconds later (the suite's timing, not a
    protocol rule: packets written together are valid Engine.IO).
    """

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, data)
        ns = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, ns)
        if sid is not None and ns in SUITE_NAMESPACES:
            await asyncio.sleep(AUTH_SPACING)
            await self.emit("auth", data if data is not None else {}, to=sid, namespace=ns)


def socketio_app(settings: Settings, supervisor: Supervisor) -> web.Application:
    """The socket.io suite's server: our Socket.IO server with the suite's two namespaces."""
    sio = create_sio(suite_settings(settings), supervisor, server_class=_SuiteServer)

    for ns in SUITE_NAMESPACES:

        async def echo(sid: str, *args: Any, _ns: str = ns) -> None:
            await sio.emit("message-back", args, to=sid, namespace=_ns)

        async def ack(sid: str, *args: Any) -> tuple[Any, ...]:
            return args

        sio.on("connect", lambda *_: None, namespace=ns)
        sio.on("message", echo, namespace=ns)
        sio.on("message-with-ack", ack, namespace=ns)
    app = web.Application()
    sio.attach(app)
    app[ENGINE] = sio.eio
    app[SIO] = sio
    return app


def engineio_app(settings: Settings) -> web.Application:
    """The engine.io suite's server: our Engine.IO layer echoing every message."""
    eio = Engine(**engine_options(suite_settings(settings)))

    async def echo(sid: str, data: Any) -> None:
        await eio.send(sid, data)

    eio.on("message", echo)
    app = web.Application()
    eio.attach(app, "engine.io")
    app[ENGINE] = eio
    return app


def run(settings: Settings, host: str, port: int, engineio: bool) -> None:
    """Serve one suite's server until interrupted."""
    supervisor = Supervisor()

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        app = engineio_app(settings) if engineio else socketio_app(settings, supervisor)
        runner = make_runner(app, settings, access_log=None, handle_signals=False)  # the runner `serve` uses
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        try:
            await stop.wait()
        finally:
            await app[ENGINE].shutdown()
            await runner.cleanup()
            await supervisor.stop()

    asyncio.run(main())
