"""Rider-ping benchmark: R riders stream `location` pings to R customers watching their orders.

Each rider carries its own order (OUT_FOR_DELIVERY in the database; the bench server tells
each rider actor `Carrying`, as the order actor does when an assignment commits), goes
`rider:online`, then sends one ping every `--interval` seconds without an ack (as a rider
app does), spread evenly over the interval (open loop: the offered rate does not depend on
the server's speed). Each customer has sent `order:watch` and receives `rider:location`.

The server runs pinned to CPU 0, this load generator to CPU 1. The same load runs against a
bare python-socketio relay with the same server settings (`--serve relay`): it forwards each
ping as a `rider:location` to the paired customer with no validation, actors, ETA, history
or index, so CPU per ping gives the cost of the engine as a ratio.

Reported per target: pings sent and handled per second, fan-out latency p50/p99 (ping sent
-> customer received, both clocks this process's), rows/s reaching `rider_locations`, server
CPU (% of its core, and microseconds per ping), server memory (RSS) per online rider.

    python -m scripts.bench_riders --riders 1000 --interval 4 --seconds 20
    python -m scripts.bench_riders --riders 5000 --interval 4 --target pocho

Uses BENCH_DATABASE_URL / BENCH_REDIS_URL (a scratch database `pocho_bench_riders` is created
on that server), else TEST_DATABASE_URL / TEST_REDIS_URL. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
import uvloop

from engine.clock import iso
from persistence.migrate import migrate
from pocho_rt.auth.tokens import TokenService
from scripts.sio_lite import LiteClient

SECRET = "bench-secret-bench-secret-bench-secret"
LAT0, LNG0 = 6.45, 3.40  # Lagos
SPEED_KMH = 30.0  # how fast the simulated riders move (well under the jump limit)
KM_PER_DEG = 111.2
CONNECT_BATCH = 50  # sockets opened concurrently during set-up (the server's Redis pool is bounded)


# ---------------------------------------------------------------- the two servers (child process)


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

        _gc_settings()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
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
        _gc_settings()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
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


# ---------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Pair:
    customer_id: str
    rider_user_id: str
    rider_id: str
    order_id: str
    lat: float
    lng: float


async def prepare_db(admin_url: str, riders: int, per_customer: int) -> tuple[str, list[Pair]]:
    """A fresh `pocho_bench_riders` database: R riders, R / per_customer customers, one vendor,
    and R orders OUT_FOR_DELIVERY, order i carried by rider i to customer i // per_customer
    (~5 km away)."""
    admin = await asyncpg.connect(admin_url)
    await admin.execute("DROP DATABASE IF EXISTS pocho_bench_riders WITH (FORCE)")
    await admin.execute("CREATE DATABASE pocho_bench_riders")
    await admin.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path="/pocho_bench_riders"))
    conn = await asyncpg.connect(url)
    await migrate(conn)
    now = datetime.now(UTC)
    vendor_user, vendor_id = uuid.uuid4(), uuid.uuid4()
    users: list[tuple[Any, ...]] = [(vendor_user, "+234690000000", "x", "VENDOR", "B", "B")]
    rider_rows, requests, offers, orders, pairs = [], [], [], [], []
    cust = uuid.uuid4()
    for i in range(riders):
        if i % per_customer == 0:
            cust = uuid.uuid4()
            users.append((cust, f"+23470{i:08d}", "x", "CUSTOMER", "B", "B"))
        rider_user, rider_id = uuid.uuid4(), uuid.uuid4()
        req, offer, order = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        lat, lng = LAT0 + (i // 100) * 0.002, LNG0 + (i % 100) * 0.002
        drop_lat = lat + 5.0 / KM_PER_DEG
        users.append((rider_user, f"+23472{i:08d}", "x", "RIDER", "B", "B"))
        rider_rows.append((rider_id, rider_user, "motorcycle"))
        requests.append(
            (
                req,
                cust,
                "bench",
                100_000,
                400_000,
                drop_lat,
                lng,
                "1 Bench St",
                "ACCEPTED",
                now + timedelta(hours=1),
                10,
                now,
            )
        )
        offers.append((offer, req, vendor_id, "Bench Kitchen", 300_000, "ACCEPTED", now, now))
        orders.append(
            (order, req, offer, cust, vendor_id, rider_id, 300_000, "OUT_FOR_DELIVERY", drop_lat, lng, now, now)
        )
        pairs.append(Pair(str(cust), str(rider_user), str(rider_id), str(order), lat, lng))
    await conn.copy_records_to_table(
        "users", records=users, columns=("id", "phone", "password_hash", "role", "first_name", "last_name")
    )
    await conn.execute(
        "INSERT INTO vendors (id, user_id, display_name, lat, lng, km_service_area, verified)"
        " VALUES ($1, $2, 'Bench Kitchen', $3, $4, 50, true)",
        vendor_id,
        vendor_user,
        LAT0,
        LNG0,
    )
    await conn.copy_records_to_table("riders", records=rider_rows, columns=("id", "user_id", "vehicle_type"))
    await conn.copy_records_to_table(
        "meal_requests",
        records=requests,
        columns=(
            "id",
            "customer_id",
            "category",
            "budget_min_kobo",
            "budget_max_kobo",
            "delivery_lat",
            "delivery_lng",
            "address_line",
            "status",
            "expires_at",
            "max_vendor_offers",
            "created_at",
        ),
    )
    await conn.copy_records_to_table(
        "offers",
        records=offers,
        columns=("id", "request_id", "vendor_id", "vendor_name", "price_kobo", "status", "created_at", "updated_at"),
    )
    await conn.copy_records_to_table(
        "orders",
        records=orders,
        columns=(
            "id",
            "request_id",
            "offer_id",
            "customer_id",
            "vendor_id",
            "rider_id",
            "amount_kobo",
            "status",
            "delivery_lat",
            "delivery_lng",
            "created_at",
            "updated_at",
        ),
    )
    await conn.close()
    return url, pairs


# ---------------------------------------------------------------- load


class Client(LiteClient):
    def emit_now(self, event: str, data: Any) -> Any:
        """Send an event without an ack (what a rider app does with pings)."""
        assert self._ws is not None
        return self._ws.send_str(f"42{self.ns}," + orjson.dumps([event, data]).decode())


@dataclass
class Stats:
    measuring: bool = False
    sent: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    worst: list[tuple[float, float]] = field(default_factory=list)  # (when received, latency)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


_METRIC = re.compile(r'^pocho_rider_pings_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


async def _pings_by_outcome(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    return {m.group(1): float(m.group(2)) for m in _METRIC.finditer(text)}


async def _rows(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM rider_locations"))
    finally:
        await conn.close()


async def _gather_batched(coros: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(coros), CONNECT_BATCH):
        out += await asyncio.gather(*coros[i : i + CONNECT_BATCH])
    return out


async def run_load(
    url: str,
    db_url: str,
    pairs: list[Pair],
    *,
    interval: float,
    seconds: float,
    warmup: float,
    relay: bool,
    pid: int,
    per_customer: int,
) -> dict[str, Any]:
    tokens = TokenService(SECRET, 24 * 3600)
    stats = Stats()
    n = len(pairs)
    sent_at: list[dict[str, float]] = [{} for _ in range(n)]
    step_deg = SPEED_KMH * interval / 3600.0 / KM_PER_DEG  # how far a rider moves between pings
    rss_idle = _rss_bytes(pid)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        customers = [Client(session, url, "/customer") for _ in pairs[::per_customer]]
        riders = [Client(session, url, "/rider") for _ in pairs]

        order_index = {p.order_id: i for i, p in enumerate(pairs)}
        relay_index = {f"order-{i}": i for i in range(n)}

        def on_location(data: Any) -> None:
            i = relay_index[data["orderId"]] if relay else order_index[data["orderId"]]
            t0 = sent_at[i].pop(data["recordedAt"], None)
            if stats.measuring and t0 is not None:
                stats.received += 1
                now = time.perf_counter()
                stats.latencies.append(now - t0)
                if now - t0 > 0.1:
                    stats.worst.append((now, now - t0))

        async def setup_customer(j: int, c: Client) -> None:
            """Customer j watches orders j*K .. j*K+K-1 on one socket."""
            mine = range(j * per_customer, min(n, (j + 1) * per_customer))
            c.handlers["rider:location"] = on_location
            p = pairs[mine[0]]
            auth = {"pairs": list(mine)} if relay else {"token": tokens.issue(p.customer_id, "CUSTOMER", f"c{j}")[0]}
            await c.connect(auth)
            for i in mine:
                reply = await c.call("order:watch", {"orderId": pairs[i].order_id}, timeout=60)
                assert reply.get("ok"), reply

        async def setup_rider(i: int, p: Pair) -> None:
            r = riders[i]
            await r.connect({"pair": i} if relay else {"token": tokens.issue(p.rider_user_id, "RIDER", f"r{i}")[0]})
            reply = await r.call("rider:online", {"lat": p.lat, "lng": p.lng}, timeout=60)
            assert reply.get("ok"), reply

        await _gather_batched([setup_customer(j, c) for j, c in enumerate(customers)])
        await _gather_batched([setup_rider(i, p) for i, p in enumerate(pairs)])
        rss_loaded = _rss_bytes(pid)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def pinger() -> None:
            """Ping k of the run goes to rider k % n at start + k * interval / n."""
            start = loop.time()
            k = 0
            while not stop.is_set():
                due = int((loop.time() - start) / interval * n)
                while k <= due:
                    i = k % n
                    p = pairs[i]
                    at = iso(datetime.now(UTC))
                    assert at is not None
                    moved = (k // n) * step_deg
                    sent_at[i][at] = time.perf_counter()
                    await riders[i].emit_now(
                        "location",
                        {"lat": p.lat + moved, "lng": p.lng, "heading": 0.0, "speedKmh": SPEED_KMH, "recordedAt": at},
                    )
                    if stats.measuring:
                        stats.sent += 1
                    k += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(pinger())
        await asyncio.sleep(warmup)
        before = {} if relay else await _pings_by_outcome(session, url)
        rows0 = await _rows(db_url)
        cpu0 = _cpu_seconds(pid)
        own0 = _cpu_seconds(os.getpid())
        stats.measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        stats.measuring = False
        elapsed = time.perf_counter() - t0
        cpu = _cpu_seconds(pid) - cpu0
        own = _cpu_seconds(os.getpid()) - own0
        rows = await _rows(db_url) - rows0
        after = {} if relay else await _pings_by_outcome(session, url)
        stop.set()
        await task
        for c in [*customers, *riders]:
            await c.close()
    lat = sorted(stats.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    handled = (
        stats.received if relay else sum(after.get(k, 0) - before.get(k, 0) for k in ("accepted", "jump", "stale"))
    )
    return {
        "sent_per_s": stats.sent / elapsed,
        "handled_per_s": handled / elapsed,
        "received_per_s": stats.received / elapsed,
        "coalesced": 0 if relay else after.get("coalesced", 0) - before.get("coalesced", 0),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "rows_per_s": rows / elapsed,
        "cpu_pct": 100 * cpu / elapsed,
        "cpu_us_per_ping": 1e6 * cpu / handled if handled else float("nan"),
        "rss_per_rider_kb": (rss_loaded - rss_idle) / n / 1024,
        "rss_mb": rss_loaded / 2**20,
        "load_cpu_pct": 100 * own / elapsed,
        "slow": [(round(w - t0, 2), round(lat, 3)) for w, lat in stats.worst[:: max(1, len(stats.worst) // 20)]],
    }


# ---------------------------------------------------------------- orchestration


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_ready(ready: Path) -> bool:
    return ready.exists()


def _spawn(cmd: list[str], env: dict[str, str], core: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", str(core), *cmd], env=env, start_new_session=True)


async def _wait_ready(ready: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit("server exited during start")
        if _is_ready(ready):
            return
        await asyncio.sleep(0.1)
    raise SystemExit("server did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--riders", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between one rider's pings")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--watches-per-customer",
        type=int,
        default=1,
        help="orders each customer socket watches (2 lets 10,000 riders fit this VM's 20,000 open files)",
    )
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--target", choices=["both", "pocho", "relay"], default="both")
    parser.add_argument("--cores", default="0,1", help="server core, load-generator core")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--serve", choices=["pocho", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    server_core, load_core = (int(c) for c in args.cores.split(","))
    os.sched_setaffinity(0, {load_core})

    db_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    if not db_url or not redis_url:
        raise SystemExit("set BENCH_DATABASE_URL and BENCH_REDIS_URL (or the TEST_* ones)")
    for u in (db_url, redis_url):
        if urlsplit(u).hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit("this benchmark only runs against servers on 127.0.0.1")
    bench_db, pairs = await prepare_db(db_url, args.riders, args.watches_per_customer)
    results: dict[str, dict[str, Any]] = {}
    targets = ["relay", "pocho"] if args.target == "both" else [args.target]
    for target in targets:
        port = _port()
        ready = Path(tempfile.gettempdir()) / f"bench-riders-{uuid.uuid4().hex}.ready"
        env = {
            **os.environ,
            "DATABASE_URL": bench_db,
            "REDIS_URL": redis_url,
            "JWT_SECRET": SECRET,
            "RATE_LIMIT_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            # Every client of this run comes from 127.0.0.1: the per-address cap would refuse
            # all but 256 of them (README: 0 behind a proxy, where all clients share one address).
            "POCHO_HTTP_MAX_CONNECTIONS_PER_IP": "0",
        }
        env.update(kv.split("=", 1) for kv in args.server_env)
        cmd = [sys.executable, "-m", "scripts.bench_riders", "--serve", target, "--port", str(port)]
        proc = _spawn([*cmd, "--ready-file", str(ready)], env, server_core)
        try:
            await _wait_ready(ready, proc)
            results[target] = await run_load(
                f"http://127.0.0.1:{port}",
                bench_db,
                pairs,
                interval=args.interval,
                seconds=args.seconds,
                warmup=args.warmup,
                relay=target == "relay",
                pid=proc.pid,
                per_customer=args.watches_per_customer,
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
            ready.unlink(missing_ok=True)

    print(
        f"\nriders={args.riders} watches/customer={args.watches_per_customer}"
        f" interval={args.interval}s offered={args.riders / args.interval:.0f} pings/s "
        f"seconds={args.seconds} server core={server_core} load core={load_core}\n"
    )
    print(
        "| target | sent/s | handled/s | customer events/s | coalesced | fan-out p50 ms | p99 ms | rows/s "
        "| server CPU % | CPU us/ping | RSS MB | RSS KB/rider |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for target, r in results.items():
        print(
            f"| {target} | {r['sent_per_s']:.0f} | {r['handled_per_s']:.0f} | {r['received_per_s']:.0f} "
            f"| {r['coalesced']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rows_per_s']:.0f} "
            f"| {r['cpu_pct']:.0f} | {r['cpu_us_per_ping']:.0f} | {r['rss_mb']:.0f} | {r['rss_per_rider_kb']:.1f} |"
        )
    for target, r in results.items():
        print(f"{target}: load generator CPU {r['load_cpu_pct']:.0f}%; slow fan-outs (s into window, s): {r['slow']}")
    if "relay" in results and "pocho" in results:
        ratio = results["pocho"]["cpu_us_per_ping"] / results["relay"]["cpu_us_per_ping"]
        print(f"\npocho / relay CPU per ping: {ratio:.2f}")


if __name__ == "__main__":
    _args = sys.argv
    if "--serve" in _args:
        _mode = _args[_args.index("--serve") + 1]
        _port_arg = int(_args[_args.index("--port") + 1])
        _ready = _args[_args.index("--ready-file") + 1]
        (serve_pocho if _mode == "pocho" else serve_relay)(_port_arg, _ready)
    else:
        uvloop.run(main())
