"""A bare relay on the project's own transport stack (create_sio: GuardedServer on our
Engine, orjson, emit_frame), doing exactly the messaging of ../shared/bench/relay-server.js:
namespaces `/customer` and `/vendor`, `auth: {room}` joins that room, `offer:revise`
{room, ...} is acked with `{ok: true, data: {offer}}` and relayed to the room's customers
as `offer:updated` {offer}. No auth, actors or storage: the transport alone (issue 13).

    ../shared/bench/transport 100 10 -- .venv/bin/python -m scripts.relay_transport --port PORT
"""

from __future__ import annotations

import argparse
import gc
from typing import Any

import orjson
import uvloop
from aiohttp import web

from pocho_rt.config import Settings
from pocho_rt.sockets.server import GuardedServer, create_sio, emit_frame, event_frame
from pocho_rt.tasks import Supervisor


def build(sio: GuardedServer) -> None:
    for ns in ("/customer", "/vendor"):

        async def connect(sid: str, environ: dict[str, Any], auth: Any = None, _ns: str = ns) -> None:
            room = auth.get("room", "r0") if isinstance(auth, dict) else "r0"
            await sio.enter_room(sid, room, namespace=_ns)

        async def revise(sid: str, d: dict[str, Any]) -> dict[str, Any]:
            frame = event_frame("offer:updated", orjson.dumps({"offer": d}).decode(), "/customer")
            await emit_frame(sio, frame, d["room"], "/customer")
            return {"ok": True, "data": {"offer": d}}

        sio.on("connect", connect, namespace=ns)
        sio.on("offer:revise", revise, namespace=ns)


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
