"""A bare relay on the project's own transport stack (create_sio: GuardedServer on our
Engine, orjson, emit_frame), doing exactly the messaging of ../shared/bench/relay-server.js:
namespaces `/customer` and `/vendor`, `auth: {room}` joins that room, `offer:revise`
{room, ...} is acked with `{ok: true, data: {offer}}` and relayed to the room's customers
as `offer:updated` {offer}. No auth, actors or storage: the transport alone (issue 13). Its
namespaces are classes, as the server's are, so commands take the server's dispatch path.

    ../shared/bench/transport 100 10 -- .venv/bin/python -m scripts.relay_transport --port PORT
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

import orjson
import socketio
import uvloop
from aiohttp import web

from pocho_rt.config import Settings
from pocho_rt.sockets.server import GuardedServer, create_sio, emit_frame, event_frame
from pocho_rt.tasks import Supervisor


class _Relay(socketio.AsyncNamespace):  # type: ignore[misc]
    """One namespace of the relay, dispatched as the server's namespaces are (a namespace
    class: `GuardedServer._handle_event`'s one-frame path), not through `sio.on` handlers."""

    def __init__(self, namespace: str, sio: GuardedServer) -> None:
        super().__init__(namespace)
        self.sio = sio

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "offer:revise":
            return await self.revise(*args)
        return await super().trigger_event(event, *args)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        room = auth.get("room", "r0") if isinstance(auth, dict) else "r0"
        await self.enter_room(sid, room)

    async def revise(self, sid: str, d: dict[str, Any]) -> dict[str, Any]:
        frame = event_frame("offer:updated", orjson.dumps({"offer": d}).decode(), "/customer")
        await emit_frame(self.sio, frame, d["room"], "/customer")
        return {"ok": True, "data": {"offer": d}}


def build(sio: GuardedServer) -> None:
    for ns in ("/customer", "/vendor"):
        sio.register_namespace(_Relay(ns, sio))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    supervisor = Supervisor()
    # the bucket is per socket (20 commands/s): a benchmark measures the transport, not the limit
    settings = Settings(rate_limit_enabled=False)
    gc.set_threshold(*settings.gc_threshold)  # as `pocho-rt serve` does
    sio = create_sio(settings, supervisor)
    build(sio)
    app = web.Application()
    sio.attach(app)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
