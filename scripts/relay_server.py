"""The baseline for scripts/bench.py: a bare python-socketio relay with no logic.

Same server settings as Pocho (orjson, no per-message deflate, aiohttp, uvloop), same
messages: a vendor's `offer:revise` is acked with an offer-shaped payload and relayed to
its paired customer as `offer:updated`. No auth, no actors, no database.

    python -m scripts.relay_server --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import socketio
import uvloop
from aiohttp import web

from pocho_rt.config import Settings
from pocho_rt.sockets.server import create_sio
from pocho_rt.tasks import Supervisor


def build(sio: socketio.AsyncServer) -> None:
    async def vendor_connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
        await sio.save_session(sid, {"pair": (auth or {}).get("pair")}, namespace="/vendor")

    async def customer_connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
        await sio.enter_room(sid, f"pair:{(auth or {}).get('pair')}", namespace="/customer")

    async def revise(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        pair = (await sio.get_session(sid, namespace="/vendor"))["pair"]
        offer = {
            "id": data["offerId"],
            "priceKobo": data["priceKobo"],
            "status": "PENDING",
            "round": 0,
            "isCompetitive": True,
            "overBudget": False,
            "requestId": "r",
            "vendorId": "v",
        }
        await sio.emit("offer:updated", {"offer": offer, "seq": 1}, to=f"pair:{pair}", namespace="/customer")
        return {"ok": True, "data": {"offer": offer}}

    async def place(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "data": {"offer": {"id": "o1", "priceKobo": data["priceKobo"]}}}

    async def create(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "data": {"request": {"id": "r1"}}}

    sio.on("connect", vendor_connect, namespace="/vendor")
    sio.on("connect", customer_connect, namespace="/customer")
    sio.on("offer:revise", revise, namespace="/vendor")
    sio.on("offer:place", place, namespace="/vendor")
    sio.on("request:create", create, namespace="/customer")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    app = web.Application()
    sio = create_sio(Settings(), Supervisor())
    build(sio)
    sio.attach(app)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main()
