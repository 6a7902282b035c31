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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import uvloop

from engine.clock import iso
from pocho_rt.auth.tokens import TokenService
from scripts.rider_db import KM_PER_DEG, Pair, prepare_db
from scripts.rider_servers import serve_pocho, serve_relay
from scripts.sio_lite import LiteClient

SECRET = "bench-secret-bench-secret-bench-secret"
SPEED_KMH = 30.0  # how fast the simulated riders move (well under the jump limit)
CONNECT_BATCH = 50  # sockets opened concurrently during set-up (the server's Redis pool is bounded)


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
