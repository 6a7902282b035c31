"""Negotiation benchmark: N vendor/customer pairs revise offers in a closed loop.

Each vendor sends `offer:revise`, waits for the ack, and sends the next; its customer
receives every `offer:updated`. The server runs pinned to CPU 0, this load generator to
CPU 1 (`--cores` to change). The same harness runs against scripts/relay_server.py (a
bare python-socketio relay with no logic) so the cost of the engine shows as a ratio.

    python -m scripts.bench --pairs 100 --seconds 20            # both targets
    python -m scripts.bench --target pocho --pairs 100

Uses BENCH_DATABASE_URL / BENCH_REDIS_URL (a scratch database `pocho_bench` is created
on that server), else TEST_DATABASE_URL / TEST_REDIS_URL, else embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import uvloop

from persistence.migrate import migrate
from pocho_rt.auth.tokens import TokenService
from pocho_rt.embedded import EmbeddedServices
from scripts.sio_lite import LiteClient

SECRET = "bench-secret-bench-secret-bench-secret"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit("server exited during start")
            try:
                async with s.get(url) as r:
                    if r.status in (200, 404):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("server did not start")


async def _prepare_db(admin_url: str, pairs: int) -> tuple[str, list[tuple[str, str, float, float]]]:
    """Fresh `pocho_bench` database with N customers and N verified vendors 11 km apart."""
    admin = await asyncpg.connect(admin_url)
    await admin.execute("DROP DATABASE IF EXISTS pocho_bench WITH (FORCE)")
    await admin.execute("CREATE DATABASE pocho_bench")
    await admin.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path="/pocho_bench"))
    conn = await asyncpg.connect(url)
    await migrate(conn)
    out = []
    for i in range(pairs):
        cust, vend = uuid.uuid4(), uuid.uuid4()
        lat, lng = 4.0 + (i // 30) * 0.1, 3.0 + (i % 30) * 0.1
        await conn.executemany(
            "INSERT INTO users (id, phone, password_hash, role, first_name, last_name) VALUES ($1,$2,'x',$3,'B','B')",
            [(cust, f"+23470{i:08d}", "CUSTOMER"), (vend, f"+23471{i:08d}", "VENDOR")],
        )
        await conn.execute(
            "INSERT INTO vendors (user_id, display_name, lat, lng, km_service_area, verified) "
            "VALUES ($1, $2, $3, $4, 2, true)",
            vend,
            f"Bench Kitchen {i}",
            lat,
            lng,
        )
        out.append((str(cust), str(vend), lat, lng))
    await conn.close()
    return url, out


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.events = 0
        self.measuring = False


async def _vendor_loop(vend: LiteClient, offer_id: str, stats: Stats, stop: asyncio.Event, pair: int) -> None:
    price = 300_000
    while not stop.is_set():
        price = 300_000 if price < 250_000 else price - 1
        t0 = time.perf_counter()
        try:
            reply = await vend.call("offer:revise", {"offerId": offer_id, "priceKobo": price})
        except (TimeoutError, ConnectionError):
            stats.errors += 1
            continue
        if stats.measuring:
            if reply.get("ok"):
                stats.latencies.append(time.perf_counter() - t0)
            else:
                stats.errors += 1


async def run_load(
    url: str, pairs: list[tuple[str, str, float, float]], seconds: float, warmup: float, relay: bool
) -> dict[str, Any]:
    tokens = TokenService(SECRET, 24 * 3600)
    stats = Stats()
    stop = asyncio.Event()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        loops = []
        clients = []
        for i, (cust_id, vend_id, lat, lng) in enumerate(pairs):
            cust = LiteClient(session, url, "/customer")
            vend = LiteClient(session, url, "/vendor")
            auth_c = {"pair": i} if relay else {"token": tokens.issue(cust_id, "CUSTOMER", f"c{i}")[0]}
            auth_v = {"pair": i} if relay else {"token": tokens.issue(vend_id, "VENDOR", f"v{i}")[0]}
            await cust.connect(auth_c)
            await vend.connect(auth_v)

            def _count(_: Any) -> None:
                if stats.measuring:
                    stats.events += 1

            cust.handlers["offer:updated"] = _count
            req = await cust.call(
                "request:create",
                {
                    "category": "bench",
                    "budgetMinKobo": 100_000,
                    "budgetMaxKobo": 400_000,
                    "deliveryLat": lat,
                    "deliveryLng": lng,
                    "addressLine": f"{i} Bench Street",
                    "expiresInMinutes": 120,
                },
            )
            assert req["ok"], req
            offer = await vend.call("offer:place", {"requestId": req["data"]["request"]["id"], "priceKobo": 300_000})
            assert offer["ok"], offer
            clients += [cust, vend]
            loops.append(_vendor_loop(vend, offer["data"]["offer"]["id"], stats, stop, i))
        tasks = [asyncio.ensure_future(c) for c in loops]
        await asyncio.sleep(warmup)
        stats.measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        stats.measuring = False
        elapsed = time.perf_counter() - t0
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            await c.close()
    lat = sorted(stats.latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "acked_per_s": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": stats.errors,
        "events_per_s": stats.events / elapsed,
        "acks": len(lat),
    }


def _spawn(cmd: list[str], env: dict[str, str], core: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", str(core), *cmd], env=env, start_new_session=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--target", choices=["both", "pocho", "relay"], default="both")
    parser.add_argument("--cores", default="0,1", help="server core, load-generator core")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the Pocho server (e.g. POCHO_WRITER_FLUSH_MS=5)",
    )
    args = parser.parse_args()
    server_core, load_core = (int(c) for c in args.cores.split(","))
    os.sched_setaffinity(0, {load_core})

    db_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    embedded = EmbeddedServices(Path(".pocho-bench"))
    if not db_url or not redis_url:
        embedded.start(need_pg=not db_url, need_redis=not redis_url)
        db_url = db_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    assert db_url and redis_url
    results: dict[str, dict[str, Any]] = {}
    try:
        bench_db, pairs = await _prepare_db(db_url, args.pairs)
        targets = ["relay", "pocho"] if args.target == "both" else [args.target]
        for target in targets:
            port = _port()
            env = {
                **os.environ,
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "DATABASE_URL": bench_db,
                "REDIS_URL": redis_url,
                "JWT_SECRET": SECRET,
                "RATE_LIMIT_ENABLED": "false",
                "LOG_LEVEL": "WARNING",
            }
            env.update(kv.split("=", 1) for kv in args.server_env)
            if target == "relay":
                cmd = [sys.executable, "-m", "scripts.relay_server", "--port", str(port)]
            else:
                cmd = [sys.executable, "-m", "pocho_rt.cli", "serve"]
            proc = _spawn(cmd, env, server_core)
            try:
                await _wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
                results[target] = await run_load(
                    f"http://127.0.0.1:{port}", pairs, args.seconds, args.warmup, relay=target == "relay"
                )
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
    finally:
        embedded.stop()

    print(f"\npairs={args.pairs} seconds={args.seconds} server core={server_core} load core={load_core}\n")
    print("| target | acked revisions/s | p50 ms | p99 ms | errors | customer events/s |")
    print("|---|---|---|---|---|---|")
    for target, r in results.items():
        print(
            f"| {target} | {r['acked_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} "
            f"| {r['events_per_s']:.0f} |"
        )
    if "relay" in results and "pocho" in results:
        print(f"\npocho / relay throughput: {results['pocho']['acked_per_s'] / results['relay']['acked_per_s']:.2f}")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
