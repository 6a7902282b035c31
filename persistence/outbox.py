"""The transactional outbox, generic over its table (search_outbox, notifications_outbox, ...).

Producers insert a row in the same transaction as the state change (see DESIGN
"Persistence"). Workers drain it here:

1. `claim` picks due rows (`status = 'pending' AND next_attempt_at <= now()`) with
   `FOR UPDATE SKIP LOCKED`, so workers on many nodes never take the same row, and in the
   same statement pushes their `next_attempt_at` forward by a *lease*. The claim commits at
   once: no transaction stays open while the side effect (an HTTP call) runs, and a worker
   that dies mid-batch only delays its rows until the lease ends.
2. The handler performs the side effect (at-least-once: handlers must be idempotent).
3. `complete` marks the rows done; `fail` counts an attempt, records `last_error` and
   schedules the next try with exponential backoff (base * 2^attempts, capped, +-25%
   jitter), or dead-letters the row (`status = 'dead'`) once `max_attempts` is reached.
   Rows are never deleted before they are done; `prune` removes old done rows.

A table needs the columns id (bigint), status ('pending' | done status | 'dead'),
attempts, next_attempt_at, last_error. `OutboxWorker` runs the loop for one table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from prometheus_client import Counter

from engine.runtime.metrics import REGISTRY

log = logging.getLogger("pocho.outbox")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

OUTBOX_ROWS = Counter(
    "pocho_outbox_rows_total",
    "Outbox rows handled by table and outcome (done, retry, dead)",
    ["table", "outcome"],
    registry=REGISTRY,
)

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class OutboxTable:
    """Which table, and how it names its final state (`done` here, `sent` for notifications)."""

    name: str
    done_status: str = "done"
    done_at_column: str | None = None

    def __post_init__(self) -> None:
        for ident in (self.name, self.done_at_column or "x"):
            if not _IDENT.match(ident):
                raise ValueError(f"not a plain SQL identifier: {ident!r}")
        if self.done_status in ("pending", "dead"):
            raise ValueError("done_status must differ from pending and dead")


SEARCH_OUTBOX = OutboxTable("search_outbox")
NOTIFICATIONS_OUTBOX = OutboxTable("notifications_outbox", done_status="sent", done_at_column="sent_at")


async def claim(db: Executor, table: OutboxTable, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Take up to `limit` due rows for `lease_seconds`; oldest first (by id)."""
    sql = f"""
        WITH due AS (
            SELECT id FROM {table.name}
            WHERE status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at, id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {table.name} AS o
        SET next_attempt_at = now() + make_interval(secs => $2::float8)
        FROM due WHERE o.id = due.id
        RETURNING o.*"""
    rows = await db.fetch(sql, limit, lease_seconds)
    return sorted(rows, key=lambda r: r["id"])


async def complete(db: Executor, table: OutboxTable, ids: Sequence[int]) -> int:
    """Mark rows done (only those still pending); return how many changed."""
    if not ids:
        return 0
    done_at = f", {table.done_at_column} = now()" if table.done_at_column else ""
    result = await db.execute(
        f"""UPDATE {table.name} SET status = $2, last_error = NULL{done_at}
            WHERE id = ANY($1::bigint[]) AND status = 'pending'""",
        list(ids),
        table.done_status,
    )
    return int(result.split()[-1])


async def fail(
    db: Executor,
    table: OutboxTable,
    errors: Mapping[int, str],
    *,
    max_attempts: int,
    backoff_base: float,
    backoff_cap: float,
) -> list[asyncpg.Record]:
    """Count one failed attempt per row: retry later with backoff, or dead-letter.

    Returns (id, status, attempts, next_attempt_at) of the rows changed.
    """
    if not errors:
        return []
    ids = list(errors)
    messages = [errors[i][:1000] for i in ids]
    rows: list[asyncpg.Record] = await db.fetch(
        f"""UPDATE {table.name} AS o
            SET attempts = o.attempts + 1,
                last_error = f.err,
                status = CASE WHEN o.attempts + 1 >= $3 THEN 'dead' ELSE o.status END,
                next_attempt_at = now() + make_interval(secs =>
                    least($5::float8, $4::float8 * power(2, o.attempts)) * (0.75 + random() * 0.5))
            FROM unnest($1::bigint[], $2::text[]) AS f(id, err)
            WHERE o.id = f.id AND o.status = 'pending'
            RETURNING o.id, o.status, o.attempts, o.next_attempt_at""",
        ids,
        messages,
        max_attempts,
        backoff_base,
        backoff_cap,
    )
    return rows


async def prune(db: Executor, table: OutboxTable, older_than_seconds: float, *, undelivered: bool = False) -> int:
    """Delete done rows created more than `older_than_seconds` ago (dead rows are kept);
    `undelivered` deletes old rows whatever their status (for a table nothing drains)."""
    if undelivered:
        result = await db.execute(
            f"DELETE FROM {table.name} WHERE created_at < now() - make_interval(secs => $1::float8)", older_than_seconds
        )
    else:
        result = await db.execute(
            f"""DELETE FROM {table.name}
                WHERE status = $1 AND created_at < now() - make_interval(secs => $2::float8)""",
            table.done_status,
            older_than_seconds,
        )
    return int(result.split()[-1])


# The handler gets the claimed rows and returns {row id: error} for the rows that failed
# (None or {} when all succeeded). Raising fails every row of the batch with that error.
# A row mapped to SETTLED was settled by the handler itself (e.g. skipped, deferred): the
# worker neither completes nor fails it.
SETTLED = "\x00settled"
Handler = Callable[[list[asyncpg.Record]], Awaitable[Mapping[int, str] | None]]


class OutboxWorker:
    """Drains one outbox table: `run()` is its loop (owned by the process supervisor) and
    returns after `stop()`.

    `prepare` (optional) runs before the first batch and is retried with backoff until it
    succeeds (e.g. creating search indexes). `wakeup()` makes the worker look for rows now
    instead of at the next poll (producers on this node call it after committing).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: OutboxTable,
        handler: Handler,
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        lease_seconds: float = 30.0,
        max_attempts: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        prune_after_seconds: float = 7 * 24 * 3600.0,
    ) -> None:
        self.pool, self.table, self.handler, self.prepare = pool, table, handler, prepare
        self.batch_size, self.poll_interval, self.lease_seconds = batch_size, poll_interval, lease_seconds
        self.max_attempts, self.backoff_base, self.backoff_cap = max_attempts, backoff_base, backoff_cap
        self.prune_after_seconds = prune_after_seconds
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self.ready = asyncio.Event()  # set once `prepare` has succeeded

    def wakeup(self) -> None:
        self._wake.set()

    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Let `run` finish the batch in hand (up to `timeout`). Unfinished rows stay leased and
        are retried after the lease by whichever worker comes next; the supervisor cancels a
        loop that did not end in time."""
        self._stopping.set()
        self._wake.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), timeout)

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wakeup, stop, or `seconds`."""
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _prepare(self) -> None:
        delay = self.backoff_base
        while self.prepare is not None and not self._stopping.is_set():
            try:
                await self.prepare()
                break
            except Exception as exc:
                log.warning(
                    "outbox prepare failed, retrying",
                    extra={"table": self.table.name, "error": repr(exc)[:300], "delay": delay},
                )
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_cap)
        self.ready.set()

    async def run_once(self) -> int:
        """Claim, handle and settle one batch; return how many rows were claimed."""
        rows = await claim(self.pool, self.table, self.batch_size, self.lease_seconds)
        if not rows:
            return 0
        try:
            failed = dict(await self.handler(rows) or {})
        except Exception as exc:
            log.warning(
                "outbox batch failed", extra={"table": self.table.name, "rows": len(rows), "error": repr(exc)[:300]}
            )
            failed = {r["id"]: f"{type(exc).__name__}: {exc}" for r in rows}
        settled = {i for i, err in failed.items() if err == SETTLED}
        failed = {i: err for i, err in failed.items() if i not in settled}
        ok = [r["id"] for r in rows if r["id"] not in failed and r["id"] not in settled]
        await complete(self.pool, self.table, ok)
        OUTBOX_ROWS.labels(self.table.name, "done").inc(len(ok))
        changed = await fail(
            self.pool,
            self.table,
            failed,
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
        )
        for row in changed:
            OUTBOX_ROWS.labels(self.table.name, "dead" if row["status"] == "dead" else "retry").inc()
            if row["status"] == "dead":
                log.error(
                    "outbox row dead-lettered",
                    extra={"table": self.table.name, "id": row["id"], "attempts": row["attempts"]},
                )
        return len(rows)

    async def run(self) -> None:
        self._running = True
        try:
            await self._drain_until_stopped()
        finally:
            self._running = False
            self._finished.set()

    async def _drain_until_stopped(self) -> None:
        await self._prepare()
        delay = self.poll_interval
        loops = 0
        while not self._stopping.is_set():
            try:
                n = await self.run_once()
                delay = self.poll_interval
                loops += 1
                if loops % 1000 == 1:
                    await prune(self.pool, self.table, self.prune_after_seconds)
            except Exception as exc:  # database trouble: back off, never die
                log.warning("outbox loop error", extra={"table": self.table.name, "error": repr(exc)[:300]})
                n = 0
                delay = min(delay * 2, 30.0)
            if n < self.batch_size:
                await self._sleep(delay)
