"""The two servers scripts/bench_riders.py measures (Pocho and the bare python-socketio relay),
each run in a child process pinned to its own core (`python -m scripts.bench_riders --serve
pocho|relay`, whose `__main__` calls them). Each writes its ready file once set-up is done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvloop


def _gc_settings() -> None:
    """Both servers get `pocho-rt serve`'s collector policy (POCHO_GC_THRESHOLD, default
    50000,20,100). BENCH_GC_THRESHOLD=a,b,c tries others (700,10,10 is CPython's stock);
    BENCH_GC_LOG=1 prints each collection pause over 20 ms (stderr)."""
    import gc

    from pocho_rt.config import load_settings

    gc.set_threshold(*load_settings().gc_threshold)
    if raw := os.environ.get("BENCH_GC_THRESHOLD"):
        a, b, c = (int(x) for x in raw.split(","))
        gc.set_threshold(a, b, c)
    if os.environ.get("BENCH_GC_LOG"):
        _log_gc_pauses()


def _log_gc_pauses() -> None:
    """BENCH_GC_LOG=1: print each garbage-collection pause over 20 ms (stderr) to explain stalls."""
    import gc

    started = [0.0]

    def _cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (took := time.perf_counter() - started[0]) > 0.02:
            print(f"gc gen{info['generation']} {took * 1000:.0f} ms collected={info['collected']}", file=sys.stderr)

    gc.callbacks.append(_cb)


def _mark_ready(path: str) -> None:
    """Tell the orchestrator (polling for the file) that set-up is done."""
    Path(path).write_text("ready")


def _started() -> asyncio.Event:
    """Both servers start alike: the benchmark's GC settings, and an event set on SIGTERM/SIGINT."""
    _gc_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def serve_pocho(port: int, ready_file: str) -> None:
    """Pocho as `pocho-rt serve` runs it, plus the one step dispatch would do: every bench rider
    is told `Carrying` for its order, so its pings fan out to that order's customer."""
    from engine.assignment import RIDER_KIND, Carrying
    from engine.rider_actor import RiderActor
    from pocho_rt.app import build_app, close_services, open_services
    from pocho_rt.config import load_settings
    from pocho_rt.http.guard import make_runner
    from pocho_rt.logs import setup_logging

    settings = load_settings().with_(port=port, host="127.0.0.1")
    setup_logging(settings.log_level)
    assert settings.database_url and settings.redis_url

    async def main() -> None:
        from aiohttp import web

        stop = _started()
        assert settings.database_url and settings.redis_url
        svc = await open_services(settings, settings.database_url, settings.redis_url)
        runner = make_runner(build_app(svc), settings, access_log=None, handle_signals=False)  # as `serve`
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        rows = await svc.pool.fetch(
            "SELECT id, rider_id, delivery_lat, delivery_lng FROM orders WHERE rider_id IS NOT NULL"
        )
        for r in rows:
            msg = Carrying(str(r["id"]), r["delivery_lat"], r["delivery_lng"])
            svc.actors.tell(RIDER_KIND, str(r["rider_id"]), msg)
        for _ in range(1200):  # the tells are queued: wait until every rider carries its order
            if sum(1 for a in svc.actors.live(RIDER_KIND) if isinstance(a, RiderActor) and a.carrying) == len(rows):
                break
            await asyncio.sleep(0.05)
        _mark_ready(ready_file)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await close_services(svc)

    uvloop.run(main())


def serve_relay(port: int, ready_file: str) -> None:
    """The baseline: python-socketio with Pocho's server settings, relaying each ping as a
    `rider:location` to the paired customer (stock `emit`), nothing else."""
    import socketio
    from aiohttp import web

    from pocho_rt.config import Settings
    from pocho_rt.sockets.server import create_sio
    from pocho_rt.tasks import Supervisor

    async def main() -> None:
        stop = _started()
        sio: socketio.AsyncServer = create_sio(Settings(), Supervisor())

        async def rider_connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
            await sio.save_session(sid, {"pair": (auth or {}).get("pair")}, namespace="/rider")

        async def customer_connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
            for pair in (auth or {}).get("pairs", []):
                await sio.enter_room(sid, f"pair:{pair}", namespace="/customer")

        async def online(sid: str, data: Any) -> dict[str, Any]:
            return {"ok": True, "data": {"online": True}}

        async def location(sid: str, data: dict[str, Any]) -> dict[str, Any]:
            pair = (await sio.get_session(sid, namespace="/rider"))["pair"]
            payload = {
                "orderId": f"order-{pair}",
                "lat": data["lat"],
                "lng": data["lng"],
                "heading": data.get("heading"),
                "etaMinutes": 10,
                "recordedAt": data["recordedAt"],
            }
            await sio.emit("rider:location", payload, to=f"pair:{pair}", namespace="/customer")
            return {"ok": True, "data": {"online": True}}

        async def watch(sid: str, data: Any) -> dict[str, Any]:
            return {"ok": True, "data": {}}

        sio.on("connect", rider_connect, namespace="/rider")
        sio.on("rider:online", online, namespace="/rider")
        sio.on("location", location, namespace="/rider")
        sio.on("connect", customer_connect, namespace="/customer")
        sio.on("order:watch", watch, namespace="/customer")
        app = web.Application()
        sio.attach(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        _mark_ready(ready_file)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    uvloop.run(main())
