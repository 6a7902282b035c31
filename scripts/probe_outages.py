"""Outage and abuse probes against a locally started node (issue 14; figures in docs/RELIABILITY.md).

The node is a real `pocho-rt serve` process whose PostgreSQL and Redis are reached through
TCP proxies run by this script (tests/proxy.py), so they can be frozen (connections held,
nothing forwarded) or cut (connections dropped, new ones refused). Throughout, N
customer/vendor pairs negotiate (each vendor revises its offer every `--pace-ms`, with a
clientMsgId, and repeats a `timeout` with the same clientMsgId until the answer is known, as
PROTOCOL asks). A prober meanwhile tries, once a second, an HTTP login, `GET
/api/v1/meal-requests`, a search, a socket connect and a `request:create`. Phases:

    baseline        nothing wrong
    pg-freeze       PostgreSQL frozen for --outage seconds, then a recovery window
    pg-cut          PostgreSQL cut for --outage seconds, then a recovery window
    redis-cut       Redis cut for --outage seconds, then a recovery window
    slowloris       --slow connections sending one header line every 5 s, and --upgrades
                    websocket upgrade requests whose headers never finish
    flood           --flood `offer:revise` sent at once on one extra vendor socket

For each phase it prints what the clients got (answer codes and the slowest answer), the p50
and p99 of the pairs' acked revisions, and at the end what was lost: every revision acked
`ok` is looked up in PostgreSQL (`negotiation_events`).

    python -m scripts.probe_outages                      # the issue's probes, ~2 minutes
    python -m scripts.probe_outages --outage 5 --flood 5000

Uses PROBE_DATABASE_URL / PROBE_REDIS_URL, else TEST_DATABASE_URL / TEST_REDIS_URL (a scratch
database `pocho_probe` is created on that server; Redis database 14 is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
from redis.asyncio import Redis

from persistence.migrate import migrate
from pocho_rt.auth.passwords import hash_password
from pocho_rt.auth.tokens import TokenService
from scripts.bench import SECRET, _port, _wait_ready
from scripts.sio_lite import LiteClient
from tests.proxy import pg_target, redis_target, redis_via_proxy, started, via_proxy

PASSWORD = "probe-password-123"
ACK_WAIT = 30.0  # a client's patience for one ack: far above every deadline of the node


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


# ---------------------------------------------------------------- set-up


async def prepare_db(admin_url: str, pairs: int) -> tuple[str, list[tuple[str, str]], tuple[str, str]]:
    """Fresh `pocho_probe` with N+1 customer/vendor pairs (vendors verified) and the prober's
    customer; (url, pairs, (prober id, prober phone))."""
    admin = await asyncpg.connect(admin_url)
    await admin.execute("DROP DATABASE IF EXISTS pocho_probe WITH (FORCE)")
    await admin.execute("CREATE DATABASE pocho_probe")
    await admin.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path="/pocho_probe"))
    conn = await asyncpg.connect(url)
    await migrate(conn)
    out = []
    for i in range(pairs + 1):  # the last pair is the flooder
        cust, vend = uuid.uuid4(), uuid.uuid4()
        await conn.executemany(
            "INSERT INTO users (id, phone, password_hash, role, first_name, last_name) VALUES ($1,$2,'x',$3,'P','P')",
            [(cust, f"+23472{i:08d}", "CUSTOMER"), (vend, f"+23473{i:08d}", "VENDOR")],
        )
        await conn.execute(
            "INSERT INTO vendors (user_id, display_name, lat, lng, km_service_area, verified) "
            "VALUES ($1, $2, $3, $4, 2, true)",
            vend,
            f"Probe Kitchen {i}",
            5.0 + i * 0.1,
            3.0,
        )
        out.append((str(cust), str(vend)))
    prober_id, prober_phone = uuid.uuid4(), "+2347499999999"
    await conn.execute(
        "INSERT INTO users (id, phone, password_hash, role, first_name, last_name) "
        "VALUES ($1, $2, $3, 'CUSTOMER', 'L', 'L')",
        prober_id,
        prober_phone,
        await hash_password(PASSWORD),
    )
    await conn.close()
    return url, out, (str(prober_id), prober_phone)


def request_body(i: int, client_msg_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "probe",
        "budgetMinKobo": 100_000,
        "budgetMaxKobo": 400_000,
        "deliveryLat": 5.0 + i * 0.1,
        "deliveryLng": 3.0,
        "addressLine": f"{i} Probe Street",
        "expiresInMinutes": 120,
    }
    if client_msg_id:
        body["clientMsgId"] = client_msg_id
    return body


# ---------------------------------------------------------------- the record of what clients got


@dataclass
class Record:
    phase: str = "setup"
    # phase -> [(latency s, code)] of the pairs' revisions (code "ok" when acked)
    revisions: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    # phase -> probe name -> Counter of answers, and the slowest answer
    probes: dict[str, dict[str, Counter[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter))
    )
    slowest: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    acked: list[tuple[str, int]] = field(default_factory=list)  # (offer id, price) answered ok
    timeouts_resolved: Counter[str] = field(default_factory=Counter)  # what a repeated `timeout` became
    notes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def probe(self, name: str, answer: str, seconds: float) -> None:
        self.probes[self.phase][name][answer] += 1
        self.slowest[self.phase][name] = max(self.slowest[self.phase][name], seconds)


async def vendor_loop(
    vend: LiteClient, offer_id: str, rec: Record, stop: asyncio.Event, pace: float, base_price: int
) -> None:
    """Revise with a fresh clientMsgId each time; repeat a `timeout` with the same one."""
    n = 0
    while not stop.is_set():
        n += 1
        price = base_price - n
        cmd = {"offerId": offer_id, "priceKobo": price, "clientMsgId": f"{offer_id[:8]}-{n}"}
        phase, t0 = rec.phase, time.perf_counter()
        code = "?"
        first_timeout = False
        while not stop.is_set():
            try:
                reply = await vend.call("offer:revise", cmd, timeout=ACK_WAIT)
            except (TimeoutError, ConnectionError):
                code = "no answer"
                break
            code = "ok" if reply.get("ok") else reply["error"]["code"]
            if code != "timeout":
                break
            first_timeout = True
            await asyncio.sleep(0.5)
        if first_timeout:
            rec.timeouts_resolved[code] += 1
        rec.revisions[phase].append((time.perf_counter() - t0, code))
        if code == "ok":
            rec.acked.append((offer_id, price))
        await asyncio.sleep(pace)


async def prober(url: str, rec: Record, stop: asyncio.Event, login_phone: str, token: str) -> None:
    """Once a second: login, a logged-in read, a search, a socket connect and a request:create."""
    timeout = aiohttp.ClientTimeout(total=ACK_WAIT)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as session:
        creator = LiteClient(session, url, "/customer")
        await creator.connect({"token": token})
        n = 0
        while not stop.is_set():
            n += 1
            auth = {"Authorization": f"Bearer {token}"}
            calls: list[tuple[str, Any]] = [
                ("login", session.post("/api/v1/auth/login", json={"phone": login_phone, "password": PASSWORD})),
                ("meal-requests", session.get("/api/v1/meal-requests", headers=auth)),
                ("search", session.get("/api/v1/search?q=probe", headers=auth)),
            ]
            for name, ctx in calls:
                t0 = time.perf_counter()
                try:
                    async with ctx as resp:
                        body = await resp.json(content_type=None)
                        answer = str(resp.status) + ("" if resp.status < 400 else f" {body['error']['code']}")
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    answer = type(exc).__name__
                rec.probe(name, answer, time.perf_counter() - t0)
            t0 = time.perf_counter()
            sock = LiteClient(session, url, "/customer")
            try:
                await asyncio.wait_for(sock.connect({"token": token}), ACK_WAIT)
                answer = "connected"
            except ConnectionError as exc:
                answer = "refused " + orjson.loads(str(exc)).get("data", {}).get("code", "?")
            except (TimeoutError, aiohttp.ClientError, AssertionError) as exc:
                answer = type(exc).__name__
            finally:
                await sock.close()
            rec.probe("socket connect", answer, time.perf_counter() - t0)
            t0 = time.perf_counter()
            try:
                reply = await creator.call("request:create", request_body(0, f"probe-{n}"), timeout=ACK_WAIT)
                answer = "ok" if reply["ok"] else reply["error"]["code"]
            except (TimeoutError, ConnectionError) as exc:
                answer = type(exc).__name__
            rec.probe("request:create", answer, time.perf_counter() - t0)
            if answer == "ok":  # keep the customer under the open-request limit
                await creator.call("request:cancel", {"requestId": reply["data"]["request"]["id"]})
            await asyncio.sleep(1.0)
        await creator.close()


# ---------------------------------------------------------------- abuse


async def slowloris(port: int, rec: Record, slow: int, upgrades: int, hold: float) -> None:
    """Slow header senders and unfinished upgrades; how many the node refused or closed, and when."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    refused = 0
    for i in range(slow + upgrades):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            refused += 1
            continue
        if i < slow:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")
        else:
            writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: probe\r\nUpgrade: websocket\r\n")
        opened.append((reader, writer, time.perf_counter()))
    closed_after: list[float] = []
    answered_503 = 0
    started_at = time.perf_counter()
    pending = list(opened)
    while pending and time.perf_counter() - started_at < hold:
        still = []
        for reader, writer, t0 in pending:
            try:
                data = await asyncio.wait_for(reader.read(4096), 0.001)
            except TimeoutError:
                still.append((reader, writer, t0))
                continue
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 503"):
                answered_503 += 1
            closed_after.append(time.perf_counter() - t0)
            writer.close()
        pending = still
        if int(time.perf_counter() - started_at) % 5 == 0:
            for _, writer, _ in pending:  # one more header line every 5 s
                with contextlib.suppress(OSError):
                    writer.write(b"X-Slow: 1\r\n")
        await asyncio.sleep(0.5)
    for _, writer, _ in pending:
        writer.close()
    at_once = [t for t in closed_after if t < 2.0]  # refused by the per-IP cap (503, or a reset)
    later = [t for t in closed_after if t >= 2.0]  # closed by the header deadline
    rec.notes["slowloris"] += [
        f"{slow} slow-header connections + {upgrades} unfinished upgrades opened from 127.0.0.1",
        f"refused at once (per-IP cap): {len(at_once)}, of which read the 503 JSON: {answered_503}; "
        f"connect refused: {refused}",
        f"closed by the header deadline, without an answer: {len(later)}, after "
        f"{min(later, default=0):.1f}-{max(later, default=0):.1f} s",
        f"still open after {hold:.0f} s: {len(pending)}",
    ]


async def flood(url: str, rec: Record, cust_token: str, vend_token: str, count: int, index: int) -> None:
    """`count` offer:revise at once on one vendor socket: every one answered, at once?"""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        cust, vend = LiteClient(session, url, "/customer"), LiteClient(session, url, "/vendor")
        await cust.connect({"token": cust_token})
        await vend.connect({"token": vend_token})
        req = await cust.call("request:create", request_body(index))  # where this pair's vendor is
        offer = await vend.call("offer:place", {"requestId": req["data"]["request"]["id"], "priceKobo": 300_000})
        offer_id = offer["data"]["offer"]["id"]
        t0 = time.perf_counter()
        calls = [
            asyncio.ensure_future(
                vend.call("offer:revise", {"offerId": offer_id, "priceKobo": 200_000 + i}, ACK_WAIT * 3)
            )
            for i in range(count)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        elapsed = time.perf_counter() - t0
        codes: Counter[str] = Counter()
        for r in results:
            codes["no answer" if isinstance(r, BaseException) else ("ok" if r["ok"] else r["error"]["code"])] += 1
        for r, i in zip(results, range(count), strict=True):
            if isinstance(r, dict) and r.get("ok"):
                rec.acked.append((offer_id, 200_000 + i))
        await asyncio.sleep(1.0)  # let the bucket refill a little
        try:
            after = await vend.call("requests:nearby", {}, timeout=ACK_WAIT)
            alive = f"yes (next command: {'ok' if after['ok'] else after['error']['code']})"
        except (TimeoutError, ConnectionError) as exc:
            alive = f"no ({type(exc).__name__})"
        rec.notes["flood"] += [
            f"{count} offer:revise sent at once on one vendor socket: {dict(codes)}",
            f"all answered within {elapsed:.2f} s; the socket still connected afterwards: {alive}",
        ]
        await cust.close()
        await vend.close()


# ---------------------------------------------------------------- the run


def start_node(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    """`pocho-rt serve` with its stderr (JSON log lines) in ./probe-node.log."""
    log = open("probe-node.log", "wb")  # open for the whole run, closed in main
    cmd = [sys.executable, "-m", "pocho_rt.cli", "serve"]
    return subprocess.Popen(cmd, env=env, stderr=log, start_new_session=True), log


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--pace-ms", type=float, default=100.0, help="pause between a vendor's revisions")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds each storage outage lasts")
    parser.add_argument("--recovery", type=float, default=8.0, help="seconds watched after each outage")
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--upgrades", type=int, default=200)
    parser.add_argument("--flood", type=int, default=20_000)
    args = parser.parse_args()

    db_admin = os.environ.get("PROBE_DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    redis_base = os.environ.get("PROBE_REDIS_URL") or os.environ["TEST_REDIS_URL"]
    redis_url = urlunsplit(urlsplit(redis_base)._replace(path="/14"))
    flush = Redis.from_url(redis_url)
    await flush.flushdb()
    await flush.aclose()
    db_url, pairs, (prober_id, login_phone) = await prepare_db(db_admin, args.pairs)
    pg, rd = await started(pg_target(db_url)), await started(redis_target(redis_url))
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATABASE_URL": via_proxy(db_url, pg.port),
        "REDIS_URL": redis_via_proxy(redis_url, rd.port),
        "JWT_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    proc, log = start_node(env)
    rec = Record()
    stop = asyncio.Event()
    try:
        await _wait_ready(url + "/healthz", proc)
        tokens = TokenService(SECRET, 24 * 3600)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        loops = []
        clients = []
        for i, (cust_id, vend_id) in enumerate(pairs[:-1]):
            cust, vend = LiteClient(session, url, "/customer"), LiteClient(session, url, "/vendor")
            await cust.connect({"token": tokens.issue(cust_id, "CUSTOMER", f"c{i}")[0]})
            await vend.connect({"token": tokens.issue(vend_id, "VENDOR", f"v{i}")[0]})
            req = await cust.call("request:create", request_body(i))
            offer = await vend.call("offer:place", {"requestId": req["data"]["request"]["id"], "priceKobo": 400_000})
            clients += [cust, vend]
            loops.append(vendor_loop(vend, offer["data"]["offer"]["id"], rec, stop, args.pace_ms / 1000, 390_000))
        prober_token = tokens.issue(prober_id, "CUSTOMER", "prober")[0]
        tasks = [asyncio.ensure_future(c) for c in loops]
        tasks.append(asyncio.ensure_future(prober(url, rec, stop, login_phone, prober_token)))

        async def phase(name: str, seconds: float) -> None:
            rec.phase = name
            print(f"phase {name} ({seconds:g} s)", file=sys.stderr)
            await asyncio.sleep(seconds)

        await phase("baseline", 5)
        pg.freeze()
        await phase("pg-freeze", args.outage)
        pg.restore()
        await phase("pg-freeze recovery", args.recovery)
        pg.cut()
        await phase("pg-cut", args.outage)
        pg.restore()
        await phase("pg-cut recovery", args.recovery)
        rd.cut()
        await phase("redis-cut", args.outage)
        rd.restore()
        await phase("redis-cut recovery", args.recovery)
        rec.phase = "slowloris"
        print("phase slowloris", file=sys.stderr)
        await slowloris(port, rec, args.slow, args.upgrades, hold=20.0)
        rec.phase = "flood"
        print("phase flood", file=sys.stderr)
        cust_id, vend_id = pairs[-1]
        cust_token, vend_token = tokens.issue(cust_id, "CUSTOMER", "fc")[0], tokens.issue(vend_id, "VENDOR", "fv")[0]
        await flood(url, rec, cust_token, vend_token, args.flood, args.pairs)
        await phase("after", 3)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            await c.close()
        await session.close()
        # What was lost: every revision acked ok must be in PostgreSQL.
        conn = await asyncpg.connect(db_url)
        rows = await conn.fetch(
            "SELECT payload->'offer'->>'id' AS offer, (payload->'offer'->>'priceKobo')::int AS price "
            "FROM negotiation_events WHERE kind = 'offer:updated'"
        )
        await conn.close()
        stored = {(r["offer"], r["price"]) for r in rows}
        lost = [a for a in rec.acked if a not in stored]
        report(rec, args, lost)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        await pg.close()
        await rd.close()


def report(rec: Record, args: argparse.Namespace, lost: list[tuple[str, int]]) -> None:
    print(
        f"\n`python -m scripts.probe_outages --pairs {args.pairs} --pace-ms {args.pace_ms:g} --outage {args.outage:g}`"
    )
    print(f"({args.pairs} pairs, each vendor revising every {args.pace_ms:g} ms plus its round trip)\n")
    print("| phase | pairs: revisions answered | acked p50 ms | acked p99 ms | slowest answer s |")
    print("|---|---|---|---|---|")
    for phase, items in rec.revisions.items():
        codes = Counter(code for _, code in items)
        acked = [lat for lat, code in items if code == "ok"]
        slowest = max((lat for lat, _ in items), default=0.0)
        print(f"| {phase} | {dict(codes)} | {pct(acked, 0.5):.1f} | {pct(acked, 0.99):.1f} | {slowest:.2f} |")
    print("\n| phase | probe | answers | slowest s |")
    print("|---|---|---|---|")
    for phase, probes in rec.probes.items():
        for name, answers in probes.items():
            print(f"| {phase} | {name} | {dict(answers)} | {rec.slowest[phase][name]:.2f} |")
    for name, lines in rec.notes.items():
        print(f"\n{name}:")
        for line in lines:
            print(f"- {line}")
    print(f"\nrevisions first answered `timeout`, then (same clientMsgId): {dict(rec.timeouts_resolved)}")
    print(f"acked revisions: {len(rec.acked)}; missing from PostgreSQL: {len(lost)}")


if __name__ == "__main__":
    asyncio.run(main())
