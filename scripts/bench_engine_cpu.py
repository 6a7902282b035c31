"""CPU per command of two engine pieces on a fixed workload, without sockets (issue 12).

The server benchmarks (`bench_cpu`) move with the machine's neighbours; these two do the same
work every run, so a lever's effect shows in a few tenths of a microsecond:

- `command`: 100 meal-request actors in memory, 100 clients each asking `ReviseOffer` in a
  closed loop: `ActorSystem.ask` -> actor -> rule -> `NegotiationStore.record` ->
  `Writer.submit`; a fake writer resolves every queued commit at once (one "group" per loop
  turn). Process CPU per command (`time.process_time`), the serve GC thresholds.
- `writer`: `Writer._commit` of one group of 90 revisions (a request, an offer and an event
  row each, as `record` encodes them) into scratch copies of the three tables, repeated;
  this process's CPU and its PostgreSQL backend's CPU (/proc) per revision, for each form:
  `json` (the default), `arrays` (`POCHO_WRITER_BULK_JSON=false`), `many` (executemany).

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_engine_cpu.py command
    PYTHONPATH=$PWD .venv/bin/python scripts/bench_engine_cpu.py writer --pg postgresql://postgres@127.0.0.1:5432

PYTHONPATH selects the tree measured (a `git archive` of another commit for before/after):
run the file by its path, not with `-m` from the project root, whose directory would come
first on sys.path. `writer` needs this tree's Writer (its `bulk_json` switch).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import uvloop

from engine import negotiation as n
from engine.meal_request_actor import Deps, Envelope, MealRequestActor
from engine.runtime.actor import ActorSystem
from persistence import negotiation as pn
from persistence.db import RawJson, _init_connection
from persistence.migrate import migrate
from persistence.writer import Statement, Writer, _Submission

_TICK = os.sysconf("SC_CLK_TCK")
_NOW = datetime.now(UTC)


def _revision(i: int) -> tuple[n.MealRequest, n.Offer]:
    rid, oid = str(uuid.uuid4()), str(uuid.uuid4())
    o = n.Offer(oid, rid, str(uuid.uuid4()), "Kitchen", 300_000 + i, None, None, None, None, "PENDING", None, 0, True,
                False, _NOW, _NOW)  # fmt: skip
    r = n.MealRequest(rid, str(uuid.uuid4()), "jollof", 1000, 500_000, 6.5, 3.4, "12 Allen Ave", None, None, "OPEN",
                      _NOW + timedelta(hours=1), 5, _NOW, 3, {oid: o})  # fmt: skip
    return r, o


# ---------------------------------------------------------------- command


class _Pii:
    def seal(self, field: str, value: Any) -> Any:
        return value


class _Writer:
    """Resolves every queued commit once per loop turn, like a group commit that costs nothing."""

    def __init__(self) -> None:
        self.queue: list[asyncio.Future[None]] = []
        self.wake = asyncio.Event()

    def submit(self, rows: Any, after: Any = None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append(fut)
        self.wake.set()
        return fut

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await asyncio.sleep(0)
            queue, self.queue = self.queue, []
            for fut in queue:
                fut.set_result(None)


class _Publisher:
    def publish(self, change: Any, nearby: Any) -> None:
        pass


class _Vendors:
    async def vendors_covering(self, lat: float, lng: float) -> tuple[str, ...]:
        return ()


async def _command(per: int) -> None:
    gc.set_threshold(50_000, 20, 100)  # serve's thresholds (pocho_rt/config.py)
    writer = _Writer()
    store = pn.NegotiationStore(None, writer, None, pii=_Pii())  # type: ignore[arg-type]
    system = ActorSystem(mailbox_size=100, idle_seconds=600, ask_timeout=5)
    deps = Deps(store, _Publisher(), _Vendors())  # type: ignore[arg-type]
    system.register(MealRequestActor.kind, functools.partial(MealRequestActor, deps=deps))
    clients = []
    for i in range(100):
        req, offer = _revision(i)
        cell = system._cell(MealRequestActor.kind, req.id)
        cell.actor.req = req  # type: ignore[attr-defined]
        cell.activated = True
        clients.append((req.id, offer.id, offer.vendor_id))
    pump = asyncio.ensure_future(writer.run())

    async def client(rid: str, oid: str, vid: str, count: int) -> None:
        for k in range(count):
            cmd = n.ReviseOffer(offer_id=oid, vendor_id=vid, price_kobo=300_000 + k, now=datetime.now(UTC))
            await system.ask(MealRequestActor.kind, rid, Envelope(cmd, "user", None))

    await asyncio.gather(*(client(*c, 50) for c in clients))  # warm up
    started = time.process_time()
    await asyncio.gather(*(client(*c, per) for c in clients))
    print(f"command: {1e6 * (time.process_time() - started) / (100 * per):.2f} us CPU per command")
    pump.cancel()


# ---------------------------------------------------------------- writer


def _backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class _Lane:
    commit_sent = False

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def connection(self) -> asyncpg.Connection:
        return self.conn


async def _writer(pg: str, groups: int) -> None:
    database = f"pocho_engine_cpu_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{pg}/postgres")
    await admin.execute(f"CREATE DATABASE {database}")
    try:
        conn = await asyncpg.connect(f"{pg}/{database}")
        await _init_connection(conn)
        await migrate(conn)
        for table in ("meal_requests", "offers"):  # copies without foreign keys
            await conn.execute(f"CREATE TABLE m_{table} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
        await conn.execute("CREATE TABLE m_negotiation_events (LIKE negotiation_events INCLUDING DEFAULTS)")
        scratch: dict[Statement, Statement] = {}

        def to_scratch(stmt: Statement) -> Statement:
            sql = stmt.sql
            for table in ("meal_requests", "offers", "negotiation_events"):
                sql = sql.replace(f'INSERT INTO "{table}"', f'INSERT INTO "m_{table}"')
            return scratch.setdefault(stmt, Statement(stmt.name, sql, stmt.order, stmt.key))

        rows: list[tuple[Statement, tuple[Any, ...]]] = []
        for i in range(90):
            req, offer = _revision(i)
            event = n.Event(4, "offer:updated", {"offer": n.offer_view(offer), "seq": 4}, (("room", "offer:updated"),))
            payload = RawJson(orjson.dumps(event.payload).decode())
            rows += [
                (to_scratch(pn.UPSERT_REQUEST), pn._request_row(req, 1, "sealed address", None)),
                (to_scratch(pn.UPSERT_OFFER), pn._offer_row(offer)),
                (to_scratch(pn.INSERT_EVENT), pn._event_row(req.id, event, payload)),
            ]
        pid = conn.get_server_pid()
        loop = asyncio.get_running_loop()
        for form in ("json", "arrays", "many", "json", "arrays", "many"):
            writer = Writer(None, bulk=form != "many", bulk_json=form == "json")
            lane = _Lane(conn)
            await conn.execute("TRUNCATE m_negotiation_events")
            subs = [_Submission(rows[i : i + 3], loop.create_future()) for i in range(0, len(rows), 3)]
            await writer._commit(lane, subs)  # type: ignore[arg-type]  # prepares, learns the types
            cpu, backend, wall = time.process_time(), _backend_cpu(pid), time.perf_counter()
            for _ in range(groups):
                await writer._commit(lane, subs)  # type: ignore[arg-type]
            per = 1e6 / (groups * 90)
            print(
                f"writer {form:6}: {(time.process_time() - cpu) * per:5.2f} us client CPU, "
                f"{(_backend_cpu(pid) - backend) * per:5.2f} us PostgreSQL CPU, "
                f"{(time.perf_counter() - wall) * per:5.1f} us wall per revision"
            )
        await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database}")
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["command", "writer"])
    p.add_argument("--pg", help="PostgreSQL server URL without a database (writer: a scratch database)")
    p.add_argument("--per-client", type=int, default=300, help="command: revisions per client")
    p.add_argument("--groups", type=int, default=60, help="writer: groups committed per form")
    args = p.parse_args()
    if args.part == "command":
        uvloop.run(_command(args.per_client))
    else:
        if not args.pg:
            p.error("writer needs --pg")
        uvloop.run(_writer(args.pg, args.groups))


if __name__ == "__main__":
    main()
