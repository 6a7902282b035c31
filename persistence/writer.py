"""The write-behind writer: many actors' changes, one transaction, futures resolved on commit.

Actors hand over rows (already encoded, so later in-memory changes cannot leak in) and
go on with their next message. The loop takes everything queued (what arrived while the
previous commit ran, plus an optional `flush_ms` linger, up to `batch_rows`) and commits it
as one transaction, statements in a fixed order that respects foreign keys: consecutive
inserts as ONE statement (each insert's rows as one JSON document, or one `unnest`ed array per
column where a column type needs it, see `_merged_sql`), a statement with a `many` form (the
shard fence) as one call, anything else as one `executemany` each. Up to `connections` groups may be in
flight, each on its own connection; the next one starts beside them only once those in
flight are older than `slow_ms`, and a submission whose predecessor (`after`) is in a group
still in flight waits for that group's outcome, so one actor's writes commit in order.

Failures: a connection problem (or a serialization failure or deadlock) retries the same
batch with backoff, forever, while new submissions queue up to `queue_max` and are
refused (`unavailable`) past it; any other error in a group is retried one submission at
a time so only the faulty one fails. Nothing whose future resolved successfully is ever
dropped. If the connection drops (or the statement deadline passes) after COMMIT was sent,
the group may or may not be stored: it is not retried (that could write it twice) and
every submission in it fails `timeout`, PROTOCOL's "outcome not known"; the actor reloads
from PostgreSQL and a client retry with the same `clientMsgId` gets the stored answer if
the group was committed, or runs again if it was not. Everything else that fails was not
written and fails `unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from engine.errors import EngineError
from engine.runtime import metrics
from persistence.db import RawJson

log = logging.getLogger("pocho.writer")

# Worth retrying the same group: the server is away, busy, or lost a race.
_RETRYABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


# `INSERT INTO t (c1, ..., cn) VALUES ($1, ..., $n) [ON CONFLICT ...]`: the shape `_bulk_sql`
# turns into one statement for many rows.
_VALUES = re.compile(r'^INSERT INTO ("[^"]+"|\w+) (.+?) VALUES \((\$\d+(?:,\$\d+)*)\)((?: ON CONFLICT [^$]*)?)$', re.S)


def _array_types(sql: str, params: Sequence[Any]) -> tuple[str, ...] | None:
    """Each column's array type for `_bulk_sql` (`params`: the statement's parameter types as
    PostgreSQL reports them), or None when the statement has another shape or a column is
    itself an array (unnest would flatten it)."""
    m = _VALUES.match(sql)
    if m is None or any(p.kind != "scalar" for p in params):
        return None
    names = m.group(3).split(",")
    if names != [f"${i}" for i in range(1, len(names) + 1)] or len(params) != len(names):
        return None
    return tuple(f'"{p.schema}"."{p.name}"[]' for p in params)


# Column types a bulk insert may send as one JSON document (`_json_sql`): PostgreSQL reads back
# exactly what orjson writes for their Python values (uuid and text as strings, 64-bit integers,
# finite doubles in their shortest exact form, booleans, aware times in RFC 3339 to the
# microsecond). Any other column type keeps one array per column, and so does a group whose
# float8 or timestamptz values JSON would change (`_json_exact`).
_JSON_SAFE = frozenset({"uuid", "text", "varchar", "int2", "int4", "int8", "float8", "bool", "timestamptz", "jsonb"})


_CHECKED = ("jsonb", "float8", "timestamptz")  # column types whose positions `_Bulk` keeps, in its order


def _json_exact(rows: Sequence[tuple[Any, ...]], floats: tuple[int, ...], times: tuple[int, ...]) -> bool:
    """Whether JSON carries these rows' doubles and times exactly as the arrays form does: not
    NaN, infinities or -0.0 (JSON has no such numbers), not a naive time or a date (asyncpg's
    binary form reads those in the process's time zone)."""
    for row in rows:
        for i in floats:
            v = row[i]
            if type(v) is float and (not math.isfinite(v) or (v == 0.0 and math.copysign(1.0, v) < 0)):
                return False
        for i in times:
            v = row[i]
            if v is not None and (type(v) is not datetime or v.tzinfo is None):
                return False
    return True


def _json_types(params: Sequence[Any]) -> tuple[str, ...] | None:
    """Each column's type name for `_json_sql`, or None when one is not in `_JSON_SAFE`."""
    if any(p.schema != "pg_catalog" or p.name not in _JSON_SAFE for p in params):
        return None
    return tuple(p.name for p in params)


def _json_sql(sql: str, types: tuple[str, ...], param: int) -> str:
    """The same insert for many rows sent as ONE text parameter, a JSON array of row arrays:
    asyncpg then encodes one string instead of every value of every column (its array encoder
    costs ~0.35 us of Python per value), and PostgreSQL reads each field with `->>` and a cast
    (a jsonb column's value travels as its JSON text)."""
    m = _VALUES.match(sql)
    assert m is not None
    fields = ", ".join(f"(r->>{i})::{t}" for i, t in enumerate(types))
    rows = f"jsonb_array_elements(${param}::text::jsonb) AS r"
    return f"INSERT INTO {m.group(1)} {m.group(2)} SELECT {fields} FROM {rows}{m.group(4)}"


def _json_rows(rows: Sequence[tuple[Any, ...]], jsonb: tuple[int, ...]) -> str:
    """`_json_sql`'s parameter: the rows as a JSON array, a jsonb column's value as its JSON
    text (what the pool's jsonb codec would send: RawJson as is, anything else encoded)."""
    out: Sequence[Sequence[Any]] = [_jsonb_as_text(row, jsonb) for row in rows] if jsonb else rows
    return orjson.dumps(out, option=orjson.OPT_NAIVE_UTC).decode()


def _jsonb_as_text(row: tuple[Any, ...], positions: tuple[int, ...]) -> list[Any]:
    out = list(row)
    for i in positions:
        v = out[i]
        if v is not None and type(v) is not RawJson:
            out[i] = orjson.dumps(v).decode()
    return out


def _bulk_sql(sql: str, types: tuple[str, ...], first: int = 1) -> str:
    """The same insert for many rows: one array per column, `unnest`ed, so PostgreSQL runs one
    statement instead of one per row; its parameters are numbered from `first`."""
    m = _VALUES.match(sql)
    assert m is not None
    arrays = ",".join(f"${i}::{t}" for i, t in enumerate(types, start=first))
    return f"INSERT INTO {m.group(1)} {m.group(2)} SELECT * FROM unnest({arrays}){m.group(4)}"


@functools.lru_cache(maxsize=256)
def _table(sql: str) -> str:
    """The table an insert writes (asked per statement of every group: remembered)."""
    m = _VALUES.match(sql)
    assert m is not None
    return m.group(1)


@dataclass(frozen=True, slots=True)
class _Bulk:
    """How one insert's rows go into a merged statement: `json` (the column type names) when
    they travel as one JSON document, else one array per column (`arrays`, their types)."""

    arrays: tuple[str, ...]
    json: tuple[str, ...] | None = None
    jsonb: tuple[int, ...] = ()  # positions of jsonb columns (their values travel as JSON text)
    floats: tuple[int, ...] = ()  # positions of float8 columns, checked by `_json_exact`
    times: tuple[int, ...] = ()  # positions of timestamptz columns, checked by `_json_exact`

    def as_arrays(self) -> _Bulk:
        return _Bulk(self.arrays)


def _merged_sql(parts: Sequence[tuple[str, _Bulk]]) -> str:
    """Several bulk inserts (into different tables) as ONE statement: all but the last as
    data-modifying WITH clauses, which PostgreSQL runs exactly once each. Foreign keys are
    checked at the end of the statement, so a parent and its child may come in one."""
    sqls, first = [], 1
    for sql, bulk in parts:
        if bulk.json is not None:
            sqls.append(_json_sql(sql, bulk.json, first))
            first += 1
        else:
            sqls.append(_bulk_sql(sql, bulk.arrays, first))
            first += len(bulk.arrays)
    if len(sqls) == 1:
        return sqls[0]
    ctes = ", ".join(f"w{i} AS ({q})" for i, q in enumerate(sqls[:-1]))
    return f"WITH {ctes} {sqls[-1]}"


@dataclass(frozen=True, slots=True)
class Statement:
    """One parametrised SQL statement; `order` fixes its place in a transaction (FKs first).

    `key`: index of the row's identity column when later rows for the same identity in one
    group replace earlier ones (snapshots); None when every row is appended (events).
    `many`: a statement that does what `sql` does for every row, given one array per parameter
    (a function looping over them), run instead of `executemany` for a statement that is not
    an insert (the shard fence): one round of the protocol per group instead of one per row.
    """

    name: str
    sql: str
    order: int
    key: int | None = None
    many: str | None = None  # the same for all of a group's rows in one call, one array per parameter


@dataclass(slots=True)
class _Submission:
    rows: Sequence[tuple[Statement, tuple[Any, ...]]]
    future: asyncio.Future[None]
    after: asyncio.Future[None] | None = None

    def orphaned(self) -> bool:
        """Its predecessor failed: it was computed on state that never reached storage."""
        a = self.after
        if a is None or not a.done() or (not a.cancelled() and a.exception() is None):
            return False
        if not self.future.done():
            self.future.set_exception(EngineError("unavailable", "an earlier change failed, retry"))
        return True


class _Lane:
    """One connection the writer commits groups on; `connections` lanes run side by side.

    The lane keeps its connection between groups: acquiring from the pool per group costs a
    reset query."""

    __slots__ = ("busy", "commit_sent", "conn", "pool")

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None
        self.commit_sent = False  # the current group's COMMIT has been sent
        self.busy = False

    async def connection(self) -> asyncpg.Connection:
        if self.conn is None:
            self.conn = await self.pool.acquire()
        return self.conn

    async def drop(self) -> None:
        """Give a possibly broken connection back (the pool replaces a closed one)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await self.pool.release(conn, timeout=2)
            except Exception:  # broken beyond release: make sure it is gone
                with contextlib.suppress(Exception):
                    conn.terminate()

    def transient(self, exc: Exception) -> bool:
        """Worth retrying the same group: the server is away or busy, or our connection broke
        (asyncpg reports a closed connection as a plain InterfaceError)."""
        if isinstance(exc, _RETRYABLE):
            return True
        if self.conn is None:
            return False
        try:
            return bool(self.conn.is_closed())
        except asyncpg.InterfaceError:  # already taken back by the pool
            return True


@dataclass(eq=False)  # identity semantics: writers are registered in a WeakSet for metrics
class Writer:
    """`connections`: groups committed side by side, each on a connection of its own, so an ack
    never waits behind an unrelated slow group while a lane is free. One actor's writes stay
    in order: a submission whose `after` is in a group still in flight waits in the queue until
    that group's outcome is known (then it is committed, or fails unwritten)."""

    pool: asyncpg.Pool
    flush_ms: float = 0.0
    batch_rows: int = 2000
    queue_max: int = 50_000
    connections: int = 1
    slow_ms: float = 20.0  # a group in flight longer than this no longer holds the next one back
    _queue: list[_Submission] = field(default_factory=list)
    _queued_rows: int = 0
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _running: bool = False
    _finished: asyncio.Event = field(default_factory=asyncio.Event)
    _lanes: list[_Lane] = field(default_factory=list)
    _groups: dict[asyncio.Task[None], tuple[_Lane, list[_Submission]]] = field(default_factory=dict)
    _inflight: set[asyncio.Future[None]] = field(default_factory=set)  # futures of groups in flight
    _retrying: int = 0  # groups waiting out a connection failure: start no other group meanwhile
    _started: dict[asyncio.Task[None], float] = field(default_factory=dict)  # group -> loop time it began
    _timer: asyncio.Handle | None = None
    _timer_due: float = 0.0
    bulk: bool = True  # a group's inserts as one `unnest` statement (see _merged_sql)
    bulk_json: bool = True  # ... each insert's rows as one JSON document where its column types allow
    _types: dict[str, _Bulk | None] = field(default_factory=dict)  # statement -> how it goes in bulk
    _merged: dict[tuple[tuple[str, bool], ...], str] = field(default_factory=dict)  # (statement, as JSON) -> one

    def __post_init__(self) -> None:
        self._lanes = [_Lane(self.pool) for _ in range(max(1, self.connections))]

    def submit(
        self, rows: Sequence[tuple[Statement, tuple[Any, ...]]], after: asyncio.Future[None] | None = None
    ) -> asyncio.Future[None]:
        """Queue rows for the next group commit; the future resolves once they are committed.

        `after`: the caller's previous submission; if it fails, this one fails unwritten."""
        if self._closing or self._queued_rows + len(rows) > self.queue_max:
            metrics.WRITER_REFUSED.inc()
            raise EngineError("unavailable", "storage is behind, retry shortly")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(rows, fut, after))
        self._queued_rows += len(rows)
        self._wakeup.set()
        return fut

    def queued_rows(self) -> int:
        return self._queued_rows

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Flush what is queued (the `run` loop commits it), then refuse more. Whatever is still
        unflushed after `timeout` fails `unavailable`: it was never acked."""
        self._closing = True
        self._wakeup.set()
        if self._running and (self._queue or self._groups):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), timeout)
        for sub in self._queue:  # first: a lane freed below must find nothing left to start
            if not sub.future.done():
                sub.future.set_exception(EngineError("unavailable", "server shutting down"))
        self._queue.clear()
        self._queued_rows = 0
        await self._cancel_groups()
        for lane in self._lanes:
            await lane.drop()

    async def _cancel_groups(self) -> None:
        """Groups still retrying (storage away): their submissions fail `unavailable`, unless
        COMMIT was already sent (then `timeout`: the outcome is not known)."""
        groups = dict(self._groups)
        for task in groups:
            task.cancel()
        await asyncio.gather(*groups, return_exceptions=True)
        for lane, subs in groups.values():
            failed = (
                EngineError("timeout", "outcome unknown, retry to learn it")
                if lane.commit_sent
                else EngineError("unavailable", "server shutting down")
            )
            for sub in subs:
                if not sub.future.done():
                    sub.future.set_exception(failed)

    async def run(self) -> None:
        """The group-commit loop (owned by the process supervisor): it starts a group on every
        free lane and owns those tasks; returns once `stop` has been called and everything
        queued is settled."""
        metrics.WRITERS.add(self)
        self._running = True
        try:
            while True:
                lane = self._free_lane()
                if self._queue and lane is not None and self._on_time():
                    if self.flush_ms > 0 and self._queued_rows < self.batch_rows and not self._closing:
                        await asyncio.sleep(self.flush_ms / 1000)
                    batch = self._take()
                    if batch:
                        self._start(lane, batch)
                        continue
                elif not self._queue and not self._groups and self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            await self._cancel_groups()
            self._running = False
            self._finished.set()

    def _on_time(self) -> bool:
        """Whether to start a group now: when none is in flight, or when every group in flight
        has taken longer than `slow_ms` (stuck on a lock, a slow disk): then the next one goes
        on another lane instead of waiting behind them. While the groups in flight are on time,
        what arrives meanwhile gathers into one larger group (fewer commits, less CPU per
        command); a timer wakes the loop when the youngest group turns slow."""
        if not self._started:
            return True
        loop = asyncio.get_running_loop()
        due = max(self._started.values()) + self.slow_ms / 1000
        if loop.time() >= due - 0.001:  # timers may fire up to the clock's resolution early
            return True
        if self._timer is None or self._timer_due != due:  # (uvloop's handles have no when())
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_due = loop.call_at(due, self._wakeup.set), due
        return False

    def _free_lane(self) -> _Lane | None:
        if self._retrying:  # storage is away: one group finds out when it is back
            return None
        return next((lane for lane in self._lanes if not lane.busy), None)

    def _start(self, lane: _Lane, batch: list[_Submission]) -> None:
        lane.busy = True
        self._inflight.update(sub.future for sub in batch)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._group(lane, batch))
        self._groups[task] = (lane, batch)
        self._started[task] = loop.time()

        def _done(t: asyncio.Task[None]) -> None:
            lane.busy = False
            self._groups.pop(t, None)
            self._started.pop(t, None)
            for sub in batch:
                self._inflight.discard(sub.future)
            self._wakeup.set()
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("group commit task failed", extra={"error": type(exc).__name__})

        task.add_done_callback(_done)

    async def _group(self, lane: _Lane, batch: list[_Submission]) -> None:
        await self._commit_with_retry(lane, batch)

    def _take(self) -> list[_Submission]:
        """The next group: queued submissions in order, up to `batch_rows`, except those whose
        predecessor is in a group still in flight (and those behind them)."""
        rows = 0
        taken: list[_Submission] = []
        held: list[_Submission] = []
        waiting: set[asyncio.Future[None]] = set()
        for i, sub in enumerate(self._queue):
            a = sub.after
            if a is not None and not a.done() and (a in self._inflight or a in waiting):
                waiting.add(sub.future)
                held.append(sub)
                continue
            if taken and rows + len(sub.rows) > self.batch_rows:
                held.extend(self._queue[i:])
                break
            rows += len(sub.rows)
            taken.append(sub)
        self._queue = held
        self._queued_rows -= rows
        return taken

    async def _commit_with_retry(self, lane: _Lane, batch: list[_Submission]) -> None:
        delay = 0.05
        retrying = False
        try:
            while True:
                live = [s for s in batch if not s.future.done() and not s.orphaned()]
                if not live:
                    return
                try:
                    await self._commit(lane, live)
                except Exception as exc:
                    if lane.transient(exc) and lane.commit_sent:
                        metrics.WRITER_FAILURES.labels("commit_unknown").inc()
                        await lane.drop()
                        log.warning(
                            "connection lost during COMMIT: outcome unknown", extra={"error": type(exc).__name__}
                        )
                        for sub in live:
                            if not sub.future.done():
                                sub.future.set_exception(EngineError("timeout", "outcome unknown, retry to learn it"))
                        return
                    if lane.transient(exc):
                        metrics.WRITER_FAILURES.labels("connection").inc()
                        if not retrying:
                            retrying = True
                            self._retrying += 1
                        await lane.drop()
                        log.warning(
                            "group commit failed, retrying", extra={"error": type(exc).__name__, "delay": delay}
                        )
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 2.0)
                        continue
                    # The data or a statement is wrong: isolate the culprit.
                    metrics.WRITER_FAILURES.labels("data").inc()
                    if len(live) == 1:
                        # No str(exc): PostgreSQL quotes row values there, and rows may hold personal data.
                        log.error(
                            "write rejected",
                            extra={"error": type(exc).__name__, "constraint": getattr(exc, "constraint_name", None)},
                        )
                        rejected = EngineError("unavailable", "write rejected")
                        rejected.__cause__ = exc  # e.g. a stale shard epoch (persistence/shards.py)
                        live[0].future.set_exception(rejected)
                        return
                    for sub in live:
                        await self._commit_with_retry(lane, [sub])
                    return
                for sub in live:
                    if not sub.future.done():
                        sub.future.set_result(None)
                return
        finally:
            if retrying:
                self._retrying -= 1
                self._wakeup.set()

    async def _commit(self, lane: _Lane, subs: list[_Submission]) -> None:
        started = time.perf_counter()
        by_stmt: dict[Statement, list[tuple[Any, ...]] | dict[Any, tuple[Any, ...]]] = {}
        for sub in subs:
            for stmt, row in sub.rows:
                if stmt.key is None:
                    bucket = by_stmt.setdefault(stmt, [])
                    assert isinstance(bucket, list)
                    bucket.append(row)
                else:
                    keyed = by_stmt.setdefault(stmt, {})
                    assert isinstance(keyed, dict)
                    keyed[row[stmt.key]] = row  # the newest snapshot wins
        lane.commit_sent = False
        conn = await lane.connection()
        async with conn.transaction():
            run: list[tuple[Statement, list[tuple[Any, ...]]]] = []  # consecutive bulk inserts
            for stmt in sorted(by_stmt, key=lambda s: s.order):
                bucket = by_stmt[stmt]
                rows = list(bucket.values()) if isinstance(bucket, dict) else bucket
                if self.bulk and await self._types_of(conn, stmt) is not None:
                    if any(_table(s.sql) == _table(stmt.sql) for s, _ in run):
                        await self._execute_run(conn, run)  # one table once per statement
                        run = []
                    run.append((stmt, rows))
                    continue
                await self._execute_run(conn, run)
                run = []
                if self.bulk and stmt.many is not None:
                    await conn.execute(stmt.many, *map(list, zip(*rows, strict=True)))
                else:
                    await conn.executemany(stmt.sql, rows)
            await self._execute_run(conn, run)
            lane.commit_sent = True  # leaving the block sends COMMIT: from here a lost answer is a doubt
        metrics.WRITER_BATCH.observe(len(subs))
        metrics.WRITER_COMMIT_SECONDS.observe(time.perf_counter() - started)

    async def _types_of(self, conn: asyncpg.Connection, stmt: Statement) -> _Bulk | None:
        """How the statement goes in bulk, from its parameter types asked of the server once
        (None: not bulk-able)."""
        if stmt.sql not in self._types:
            params = (await conn.prepare(stmt.sql)).get_parameters()
            arrays = _array_types(stmt.sql, params)
            json = _json_types(params) if self.bulk_json else None
            jsonb, floats, times = (tuple(i for i, t in enumerate(json or ()) if t == kind) for kind in _CHECKED)
            self._types[stmt.sql] = None if arrays is None else _Bulk(arrays, json, jsonb, floats, times)
        return self._types[stmt.sql]

    async def _execute_run(self, conn: asyncpg.Connection, run: list[tuple[Statement, list[tuple[Any, ...]]]]) -> None:
        """Consecutive inserts of a group in one round trip: one statement (prepared once per
        connection by asyncpg's statement cache), one array per column."""
        if not run:
            return
        if len(run) == 1 and len(run[0][1]) == 1:
            await conn.execute(run[0][0].sql, *run[0][1][0])
            return
        forms: list[_Bulk] = []
        for stmt, rows in run:
            bulk = self._types[stmt.sql]
            assert bulk is not None
            if bulk.json is not None and not _json_exact(rows, bulk.floats, bulk.times):
                bulk = bulk.as_arrays()
            forms.append(bulk)
        key = tuple((stmt.sql, bulk.json is not None) for (stmt, _), bulk in zip(run, forms, strict=True))
        sql = self._merged.get(key)
        if sql is None:
            sql = self._merged[key] = _merged_sql(
                [(stmt.sql, bulk) for (stmt, _), bulk in zip(run, forms, strict=True)]
            )
        args: list[Any] = []
        for (_, rows), bulk in zip(run, forms, strict=True):
            if bulk.json is not None:
                args.append(_json_rows(rows, bulk.jsonb))
            else:
                args.extend(map(list, zip(*rows, strict=True)))
        await conn.execute(sql, *args)
