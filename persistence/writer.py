"""The write-behind writer: many actors' changes, one transaction, futures resolved on commit.

Actors hand over rows (already encoded, so later in-memory changes cannot leak in) and
go on with their next message. A single loop takes everything queued (what
arrived while the previous commit ran, plus an optional `flush_ms` linger, up to
`batch_rows`), and commits it as one transaction with one
`executemany` per statement, statements in a fixed order that respects foreign keys.

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
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from engine.errors import EngineError
from engine.runtime import metrics

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


@dataclass(frozen=True, slots=True)
class Statement:
    """One parametrised SQL statement; `order` fixes its place in a transaction (FKs first).

    `key`: index of the row's identity column when later rows for the same identity in one
    group replace earlier ones (snapshots); None when every row is appended (events).
    """

    name: str
    sql: str
    order: int
    key: int | None = None


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


@dataclass(eq=False)  # identity semantics: writers are registered in a WeakSet for metrics
class Writer:
    pool: asyncpg.Pool
    flush_ms: float = 0.0
    batch_rows: int = 2000
    queue_max: int = 50_000
    _queue: list[_Submission] = field(default_factory=list)
    _queued_rows: int = 0
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _running: bool = False
    _finished: asyncio.Event = field(default_factory=asyncio.Event)
    _inflight: list[_Submission] = field(default_factory=list)
    # The writer keeps one connection: acquiring from the pool per group costs a reset query.
    _conn: asyncpg.Connection | None = None
    _commit_sent: bool = False  # the current group's COMMIT has been sent

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
        if self._running and (self._queue or self._inflight):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), timeout)
        for sub in self._inflight + self._queue:
            if not sub.future.done():
                sub.future.set_exception(EngineError("unavailable", "server shutting down"))
        self._queue.clear()
        self._inflight = []
        self._queued_rows = 0
        await self._drop_connection()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await self.pool.acquire()
        return self._conn

    async def _drop_connection(self) -> None:
        """Give a possibly broken connection back (the pool replaces a closed one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self.pool.release(conn, timeout=2)
            except Exception:  # broken beyond release: make sure it is gone
                with contextlib.suppress(Exception):
                    conn.terminate()

    async def run(self) -> None:
        """The group-commit loop (owned by the process supervisor); returns once `stop` has
        been called and the queue is empty."""
        metrics.WRITERS.add(self)
        self._running = True
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if self.flush_ms > 0 and self._queued_rows < self.batch_rows and not self._closing:
                    await asyncio.sleep(self.flush_ms / 1000)
                self._inflight = self._take()
                await self._commit_with_retry(self._inflight)
                self._inflight = []
        finally:
            self._running = False
            self._finished.set()

    def _take(self) -> list[_Submission]:
        rows = n = 0
        for sub in self._queue:
            if n and rows + len(sub.rows) > self.batch_rows:
                break
            rows += len(sub.rows)
            n += 1
        taken = self._queue[:n]
        del self._queue[:n]
        self._queued_rows -= rows
        return taken

    def _transient(self, exc: Exception) -> bool:
        """Worth retrying the same group: the server is away or busy, or our connection broke
        (asyncpg reports a closed connection as a plain InterfaceError)."""
        if isinstance(exc, _RETRYABLE):
            return True
        if self._conn is None:
            return False
        try:
            return bool(self._conn.is_closed())
        except asyncpg.InterfaceError:  # already taken back by the pool
            return True

    async def _commit_with_retry(self, batch: list[_Submission]) -> None:
        delay = 0.05
        while True:
            live = [s for s in batch if not s.future.done() and not s.orphaned()]
            if not live:
                return
            try:
                await self._commit(live)
            except Exception as exc:
                if self._transient(exc) and self._commit_sent:
                    metrics.WRITER_FAILURES.labels("commit_unknown").inc()
                    await self._drop_connection()
                    log.warning("connection lost during COMMIT: outcome unknown", extra={"error": type(exc).__name__})
                    for sub in live:
                        if not sub.future.done():
                            sub.future.set_exception(EngineError("timeout", "outcome unknown, retry to learn it"))
                    return
                if self._transient(exc):
                    metrics.WRITER_FAILURES.labels("connection").inc()
                    await self._drop_connection()
                    log.warning("group commit failed, retrying", extra={"error": type(exc).__name__, "delay": delay})
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
                    await self._commit_with_retry([sub])
                return
            for sub in live:
                if not sub.future.done():
                    sub.future.set_result(None)
            return

    async def _commit(self, subs: list[_Submission]) -> None:
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
        self._commit_sent = False
        conn = await self._connection()
        async with conn.transaction():
            for stmt in sorted(by_stmt, key=lambda s: s.order):
                rows = by_stmt[stmt]
                await conn.executemany(stmt.sql, list(rows.values()) if isinstance(rows, dict) else rows)
            self._commit_sent = True  # leaving the block sends COMMIT: from here a lost answer is a doubt
        metrics.WRITER_BATCH.observe(len(subs))
        metrics.WRITER_COMMIT_SECONDS.observe(time.perf_counter() - started)
