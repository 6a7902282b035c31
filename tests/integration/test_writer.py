"""The write-behind writer (persistence/writer.py) against a real PostgreSQL: group commit in one
transaction, acks only after commit, statement order, keyed coalescing, data-error isolation,
the queue bound, outage and recovery through a cuttable TCP proxy (tests/proxy.py), a COMMIT
whose answer is lost (`timeout`, not retried), and stop(). What one group sends (the bulk
forms, `Statement.many`, the fences) is in test_writer_groups.py.

Every test creates its own scratch tables (dropped at the end) and its own pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from engine.errors import EngineError
from engine.runtime.metrics import REGISTRY
from persistence.db import create_pool
from persistence.writer import Statement, Writer
from tests.helpers import close_pool, eventually
from tests.integration.writer_support import insert, running, scratch
from tests.proxy import TcpProxy, via_proxy

Rows = Sequence[tuple[Statement, tuple[Any, ...]]]


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def failures(reason: str) -> float:
    return sample("pocho_writer_failures_total", {"reason": reason})


@pytest.fixture
async def proxied_pool(database_url: str, proxy: TcpProxy, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(via_proxy(database_url, proxy.port), size=2)
    assert proxy.accepted >= 1  # really goes through the proxy
    try:
        yield p
    finally:
        await close_pool(p)


# ---------------------------------------------------------------- group commit and acks


async def test_many_submissions_commit_in_one_transaction(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = "CREATE TABLE wt_group (id int PRIMARY KEY, v text, tx bigint NOT NULL DEFAULT txid_current())"
    stmt = insert("wt_group")
    async with scratch(db, ddl, "wt_group"), running(Writer(pool, flush_ms=20, batch_rows=1000)) as writer:
        futs = [writer.submit([(stmt, (2 * i, f"a{i}")), (stmt, (2 * i + 1, f"b{i}"))]) for i in range(25)]
        assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [None] * 25
        rows = await db.fetch("SELECT id, v, tx FROM wt_group ORDER BY id")
        assert [r["id"] for r in rows] == list(range(50))
        assert len({r["tx"] for r in rows}) == 1  # one transaction for all 25 submissions

        # a later, separate submission is its own transaction
        await asyncio.wait_for(writer.submit([(stmt, (100, "later"))]), 5)
        txs = await db.fetch("SELECT DISTINCT tx FROM wt_group")
        assert len(txs) == 2


async def test_future_resolves_only_after_commit(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    lock_key = 77_420_001
    ddl = f"""
        CREATE TABLE wt_ack (id int PRIMARY KEY, v text);
        CREATE OR REPLACE FUNCTION wt_ack_gate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock({lock_key}); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER wt_ack_gate AFTER INSERT ON wt_ack
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wt_ack_gate();
    """
    waiting_sql = """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                     WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"""
    stmt = insert("wt_ack")
    async with scratch(db, ddl, "wt_ack"):
        try:
            await db.execute("SELECT pg_advisory_lock($1)", lock_key)
            async with running(Writer(pool, flush_ms=1)) as writer:
                fut = writer.submit([(stmt, (1, "x"))])

                async def inside_commit() -> bool:
                    return bool(await db.fetchval(waiting_sql))

                # the deferred trigger holds the writer inside COMMIT until we release the lock
                await eventually(inside_commit, what="the writer to wait inside COMMIT")
                # Inserted, but not committed: invisible to others, and no ack yet (an ack given before
                # COMMIT returns would have been given before the writer even sent it).
                assert await db.fetchval("SELECT count(*) FROM wt_ack") == 0
                assert not fut.done()
                await db.execute("SELECT pg_advisory_unlock($1)", lock_key)
                await asyncio.wait_for(fut, 5)
                # when the future resolves, another connection already sees the row
                assert await db.fetchval("SELECT v FROM wt_ack WHERE id = 1") == "x"
        finally:
            await db.execute("SELECT pg_advisory_unlock_all()")
            await db.execute("DROP FUNCTION IF EXISTS wt_ack_gate() CASCADE")


async def test_statements_run_in_order_regardless_of_submission(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = """
        CREATE TABLE wt_parent (id int PRIMARY KEY, v text);
        CREATE TABLE wt_child (id int PRIMARY KEY, v int NOT NULL REFERENCES wt_parent (id));
    """
    parent = insert("wt_parent", order=1)
    child = insert("wt_child", order=2)
    async with scratch(db, ddl, "wt_child", "wt_parent"), running(Writer(pool, flush_ms=20)) as writer:
        futs = [
            writer.submit([(child, (10, 1)), (child, (11, 1))]),  # children before their parent
            writer.submit([(parent, (1, "p1"))]),
            writer.submit([(child, (12, 2)), (parent, (2, "p2"))]),  # child first within one submission
        ]
        assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [None, None, None]
        assert await db.fetchval("SELECT count(*) FROM wt_parent") == 2
        children = await db.fetch("SELECT id, v FROM wt_child ORDER BY id")
        assert [(r["id"], r["v"]) for r in children] == [(10, 1), (11, 1), (12, 2)]


async def test_keyed_statements_coalesce_last_row_wins(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = """
        CREATE TABLE wt_snap (id int PRIMARY KEY, v text);
        CREATE TABLE wt_event (id int NOT NULL, v text);
    """
    snap = insert("wt_snap", key=0)  # plain INSERT: a second row for the same id would violate the key
    event = insert("wt_event")
    async with scratch(db, ddl, "wt_snap", "wt_event"), running(Writer(pool, flush_ms=20)) as writer:
        data_failures = failures("data")
        futs = [
            writer.submit([(snap, (1, "a")), (event, (1, "e1"))]),
            writer.submit([(snap, (1, "b")), (snap, (2, "x")), (event, (1, "e1"))]),
            writer.submit([(snap, (1, "c"))]),
        ]
        assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [None, None, None]
        snaps = await db.fetch("SELECT id, v FROM wt_snap ORDER BY id")
        assert [(r["id"], r["v"]) for r in snaps] == [(1, "c"), (2, "x")]
        assert await db.fetchval("SELECT count(*) FROM wt_event") == 2  # unkeyed rows are all appended
        assert failures("data") == data_failures  # coalesced, not rescued by bisection


# ---------------------------------------------------------------- groups side by side


async def test_a_slow_group_holds_back_only_writes_chained_after_it(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    """Two lanes: a group stuck inside COMMIT does not delay an unrelated submission, while a
    submission chained `after` it (the same actor's next write) waits for its outcome: committed
    after it, or failed unwritten when it fails."""
    lock_key = 77_420_031
    ddl = f"""
        CREATE TABLE wt_slow (id int PRIMARY KEY, v text);
        CREATE TABLE wt_fast (id int PRIMARY KEY, v text, tx bigint NOT NULL DEFAULT txid_current());
        CREATE OR REPLACE FUNCTION wt_slow_gate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({lock_key});
            IF NEW.v = 'bad' THEN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER wt_slow_gate AFTER INSERT ON wt_slow
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wt_slow_gate();
    """
    waiting_sql = """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                     WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"""
    slow, fast = insert("wt_slow"), insert("wt_fast")

    async def inside_commit() -> bool:
        return bool(await db.fetchval(waiting_sql))

    async with scratch(db, ddl, "wt_slow", "wt_fast"):
        try:
            async with running(Writer(pool, flush_ms=1, connections=2)) as writer:
                for outcome in ("good", "bad"):
                    await db.execute("SELECT pg_advisory_lock($1)", lock_key)
                    base = 10 if outcome == "good" else 20
                    first = writer.submit([(slow, (base, outcome))])
                    await eventually(inside_commit, what="the slow group to wait inside COMMIT")
                    chained = writer.submit([(fast, (base + 1, "chained"))], after=first)
                    unrelated = writer.submit([(fast, (base + 2, "unrelated"))])
                    await asyncio.wait_for(unrelated, 5)  # committed beside the stuck group
                    assert not first.done() and not chained.done()
                    assert await db.fetchval("SELECT count(*) FROM wt_fast WHERE id = $1", base + 1) == 0
                    await db.execute("SELECT pg_advisory_unlock($1)", lock_key)
                    results = await asyncio.wait_for(asyncio.gather(first, chained, return_exceptions=True), 5)
                    stored = await db.fetchval("SELECT count(*) FROM wt_fast WHERE id = $1", base + 1)
                    if outcome == "good":
                        assert results == [None, None]
                        assert stored == 1
                    else:
                        assert all(isinstance(r, EngineError) and r.code == "unavailable" for r in results)
                        assert stored == 0  # computed on a write that never landed: never written
        finally:
            await db.execute("SELECT pg_advisory_unlock_all()")
            await db.execute("DROP FUNCTION IF EXISTS wt_slow_gate() CASCADE")


# ---------------------------------------------------------------- failures


async def test_data_error_fails_only_its_submission(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = "CREATE TABLE wt_check (id int PRIMARY KEY, v text NOT NULL CHECK (v <> 'bad'))"
    stmt = insert("wt_check")
    async with scratch(db, ddl, "wt_check"), running(Writer(pool, flush_ms=20)) as writer:
        data_failures = failures("data")
        good1 = writer.submit([(stmt, (1, "ok"))])
        bad = writer.submit([(stmt, (2, "fine")), (stmt, (3, "bad"))])
        good2 = writer.submit([(stmt, (4, "ok")), (stmt, (5, "ok"))])
        results = await asyncio.wait_for(asyncio.gather(good1, bad, good2, return_exceptions=True), 5)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], EngineError) and results[1].code == "unavailable"
        ids = [r["id"] for r in await db.fetch("SELECT id FROM wt_check ORDER BY id")]
        assert ids == [1, 4, 5]  # the bad submission is all-or-nothing
        assert failures("data") > data_failures
        # the writer goes on
        await asyncio.wait_for(writer.submit([(stmt, (6, "ok"))]), 5)
        assert await db.fetchval("SELECT count(*) FROM wt_check") == 4


async def test_bad_parameter_type_fails_only_its_submission(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = "CREATE TABLE wt_type (id int PRIMARY KEY, v text)"
    stmt = insert("wt_type")
    async with scratch(db, ddl, "wt_type"), running(Writer(pool, flush_ms=20)) as writer:
        good = writer.submit([(stmt, (1, "ok"))])
        bad = writer.submit([(stmt, ("not-an-int", "x"))])
        results = await asyncio.wait_for(asyncio.gather(good, bad, return_exceptions=True), 5)
        assert results[0] is None
        assert isinstance(results[1], EngineError) and results[1].code == "unavailable"
        assert await db.fetchval("SELECT count(*) FROM wt_type") == 1


async def test_wrong_parameter_count_fails_only_its_submission(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = "CREATE TABLE wt_arity (id int PRIMARY KEY, v text)"
    stmt = insert("wt_arity")
    async with scratch(db, ddl, "wt_arity"), running(Writer(pool, flush_ms=20)) as writer:
        conn_failures = failures("connection")
        good = writer.submit([(stmt, (1, "ok"))])
        bad = writer.submit([(stmt, (2, "x", "extra"))])
        # Either both submissions settle, or the writer took the bad statement for a connection problem
        # and went into its retry loop: whichever comes first, without a time limit deciding.
        await eventually(
            lambda: (good.done() and bad.done()) or failures("connection") > conn_failures,
            what="both submissions to settle",
        )
        assert failures("connection") == conn_failures, "the writer is stuck retrying the batch"
        assert good.result() is None
        err = bad.exception()
        assert isinstance(err, EngineError) and err.code == "unavailable"
        assert await db.fetchval("SELECT count(*) FROM wt_arity") == 1


# ---------------------------------------------------------------- outage, queue bound, recovery


async def test_queue_bound_while_postgres_is_unreachable(
    proxied_pool: asyncpg.Pool, proxy: TcpProxy, db: asyncpg.Connection
) -> None:
    ddl = "CREATE TABLE wt_bound (id int NOT NULL, v text)"  # no key: a duplicate would show
    stmt = insert("wt_bound")
    async with scratch(db, ddl, "wt_bound"):
        writer = Writer(proxied_pool, flush_ms=1, batch_rows=2, queue_max=4)
        async with running(writer):
            await asyncio.wait_for(writer.submit([(stmt, (0, "before"))]), 5)
            proxy.cut()
            conn_failures, refused = failures("connection"), sample("pocho_writer_refused_total")
            in_flight = writer.submit([(stmt, (1, "in-flight"))])
            await eventually(lambda: failures("connection") > conn_failures)  # taken, retrying
            accepted = [in_flight]
            accepted += [writer.submit([(stmt, (10 + i, "queued"))]) for i in range(3)]
            with pytest.raises(EngineError) as big:
                writer.submit([(stmt, (90, "x")), (stmt, (91, "x"))])  # 3 + 2 > queue_max
            assert big.value.code == "unavailable"
            accepted.append(writer.submit([(stmt, (13, "queued"))]))  # exactly at the bound
            with pytest.raises(EngineError) as err:
                writer.submit([(stmt, (99, "refused"))])
            assert err.value.code == "unavailable"
            # Refused at once, not once there is room: submit() is synchronous, and the database is still
            # unreachable (the in-flight submission has not settled) when the refusal is raised.
            assert not in_flight.done()
            assert sample("pocho_writer_refused_total") == refused + 2
            # nothing acked while the database is gone, however many times the writer retries
            retried = failures("connection")
            await eventually(lambda: failures("connection") >= retried + 2, what="two more failed attempts")
            assert not any(f.done() for f in accepted)
            proxy.restore()
            assert await asyncio.wait_for(asyncio.gather(*accepted), 10) == [None] * 5
        rows = await db.fetch("SELECT id, count(*) AS n FROM wt_bound GROUP BY id ORDER BY id")
        assert [(r["id"], r["n"]) for r in rows] == [(0, 1), (1, 1), (10, 1), (11, 1), (12, 1), (13, 1)]


async def test_outage_and_recovery_through_a_cut_proxy(
    proxied_pool: asyncpg.Pool, proxy: TcpProxy, db: asyncpg.Connection
) -> None:
    ddl = "CREATE TABLE wt_outage (id int NOT NULL, v text)"  # no key: a duplicate would show
    stmt = insert("wt_outage")
    async with scratch(db, ddl, "wt_outage"), running(Writer(proxied_pool, flush_ms=2)) as writer:
        await asyncio.wait_for(writer.submit([(stmt, (0, "warm"))]), 5)
        conn_failures = failures("connection")
        proxy.cut()
        futs = [writer.submit([(stmt, (2 * i + 1, "a")), (stmt, (2 * i + 2, "b"))]) for i in range(5)]
        await eventually(lambda: failures("connection") > conn_failures)
        # more work arrives while the writer retries
        futs += [writer.submit([(stmt, (100 + i, "late"))]) for i in range(5)]
        await eventually(lambda: failures("connection") >= conn_failures + 2)
        assert not any(f.done() for f in futs)
        assert await db.fetchval("SELECT count(*) FROM wt_outage") == 1
        accepted_before = proxy.accepted
        proxy.restore()
        assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [None] * 10
        assert proxy.accepted > accepted_before  # the pool reconnected through the proxy
        rows = await db.fetch("SELECT id, count(*) AS n FROM wt_outage GROUP BY id ORDER BY id")
        expected = [0, *range(1, 11), *range(100, 105)]
        assert [r["id"] for r in rows] == expected
        assert all(r["n"] == 1 for r in rows)  # every row exactly once
        # and the writer is healthy again
        await asyncio.wait_for(writer.submit([(stmt, (200, "after"))]), 5)


async def test_connection_lost_during_commit_is_timeout_and_not_retried(
    proxied_pool: asyncpg.Pool, proxy: TcpProxy, db: asyncpg.Connection
) -> None:
    """The proxy is cut while PostgreSQL holds the group inside COMMIT; PostgreSQL then commits it.
    The writer cannot know: every submission of the group fails `timeout` (outcome unknown),
    never `unavailable` (which promises "not applied"), and the group is not written twice."""
    lock_key = 77_420_014
    ddl = f"""
        CREATE TABLE wt_doubt (id int NOT NULL, v text);
        CREATE OR REPLACE FUNCTION wt_doubt_gate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock({lock_key}); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER wt_doubt_gate AFTER INSERT ON wt_doubt
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wt_doubt_gate();
    """
    waiting_sql = """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                     WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"""
    stmt = insert("wt_doubt")  # no key: a second write of the group would show as duplicates
    async with scratch(db, ddl, "wt_doubt"):
        try:
            await db.execute("SELECT pg_advisory_lock($1)", lock_key)
            async with running(Writer(proxied_pool, flush_ms=1)) as writer:
                unknown = failures("commit_unknown")
                futs = [writer.submit([(stmt, (1, "a"))]), writer.submit([(stmt, (2, "b")), (stmt, (3, "c"))])]

                async def inside_commit() -> bool:
                    return bool(await db.fetchval(waiting_sql))

                await eventually(inside_commit, what="the writer to wait inside COMMIT")
                proxy.cut()
                results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 10)
                for err in results:
                    assert isinstance(err, EngineError) and err.code == "timeout", err
                assert failures("commit_unknown") == unknown + 1
                # PostgreSQL finishes the COMMIT it was given once the gate opens: the rows are stored.
                await db.execute("SELECT pg_advisory_unlock($1)", lock_key)
                await eventually(
                    lambda: db.fetchval("SELECT count(*) = 3 FROM wt_doubt"), what="the orphaned COMMIT to land"
                )
                proxy.restore()
                await asyncio.wait_for(writer.submit([(stmt, (4, "after"))]), 10)  # the writer goes on
            rows = await db.fetch("SELECT id, count(*) AS n FROM wt_doubt GROUP BY id ORDER BY id")
            assert [(r["id"], r["n"]) for r in rows] == [(1, 1), (2, 1), (3, 1), (4, 1)]  # nothing written twice
        finally:
            await db.execute("SELECT pg_advisory_unlock_all()")
            await db.execute("DROP FUNCTION IF EXISTS wt_doubt_gate() CASCADE")


# ---------------------------------------------------------------- stop


async def test_stop_flushes_queued_and_refuses_later_submissions(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    ddl = "CREATE TABLE wt_stop (id int PRIMARY KEY, v text)"
    stmt = insert("wt_stop")
    async with scratch(db, ddl, "wt_stop"), running(Writer(pool)) as writer:
        await asyncio.wait_for(writer.submit([(stmt, (100, "warm"))]), 5)  # the loop is up and idle
        futs = [writer.submit([(stmt, (i, "q"))]) for i in range(5)]
        # No await since: the loop has not seen them, they are all still queued when stop() begins.
        assert not any(f.done() for f in futs) and writer.queued_rows() == 5
        await writer.stop()
        assert all(f.done() and f.exception() is None for f in futs)
        assert await db.fetchval("SELECT count(*) FROM wt_stop WHERE v = 'q'") == 5
        refused = sample("pocho_writer_refused_total")
        with pytest.raises(EngineError) as err:
            writer.submit([(stmt, (9, "late"))])
        assert err.value.code == "unavailable"
        assert sample("pocho_writer_refused_total") == refused + 1


async def test_stop_during_outage_fails_every_unflushed_submission(
    proxied_pool: asyncpg.Pool, proxy: TcpProxy, db: asyncpg.Connection
) -> None:
    ddl = "CREATE TABLE wt_stop_cut (id int NOT NULL, v text)"
    stmt = insert("wt_stop_cut")
    async with scratch(db, ddl, "wt_stop_cut"), running(Writer(proxied_pool, flush_ms=1)) as writer:
        proxy.cut()
        conn_failures = failures("connection")
        in_flight = writer.submit([(stmt, (1, "x"))])
        await eventually(lambda: failures("connection") > conn_failures)
        queued = writer.submit([(stmt, (2, "y"))])
        # The proxy stays cut: the writer cannot finish however long stop() waits, so the short bound
        # only keeps the test quick; every unflushed submission must fail either way.
        await writer.stop(timeout=0.3)
        for name, fut in (("queued", queued), ("in-flight", in_flight)):
            assert fut.done(), f"the {name} submission was left pending forever"
            err = fut.exception()
            assert isinstance(err, EngineError) and err.code == "unavailable"


def test_lanes_on_uvloop(database_url: str) -> None:
    """The server runs on uvloop, whose handles differ from asyncio's (a `call_at` that is already
    due returns a plain Handle, without `when()`; relying on it once killed the writer's loop in
    the server while every asyncio-loop test passed). Groups held back while slow ones are in
    flight, then started beside them, on uvloop's own loop (in a thread of its own, away from
    the tests' loop): every submission commits once and the writer's loop is still running."""
    import threading

    import uvloop

    async def scenario() -> tuple[list[Any], int, bool]:
        pool = await create_pool(database_url, size=4)
        db = await asyncpg.connect(database_url)
        try:
            await db.execute("DROP TABLE IF EXISTS wt_uv")
            await db.execute("""
                CREATE TABLE wt_uv (id int PRIMARY KEY, v text);
                CREATE OR REPLACE FUNCTION wt_uv_slow() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$;
                CREATE TRIGGER wt_uv_slow AFTER INSERT ON wt_uv FOR EACH STATEMENT EXECUTE FUNCTION wt_uv_slow();
            """)
            writer = Writer(pool, connections=2, slow_ms=5)
            loop_task = asyncio.ensure_future(writer.run())
            futs = []
            for i in range(40):  # arrive while groups are in flight: some held back, some started beside
                futs.append(writer.submit([(insert("wt_uv"), (i, "x"))]))
                await asyncio.sleep(0.002)
            results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 20)
            alive = not loop_task.done()
            await writer.stop(timeout=2)
            await asyncio.wait_for(loop_task, 5)
            count: int = await db.fetchval("SELECT count(*) FROM wt_uv")
            return results, count, alive
        finally:
            await db.execute("DROP TABLE IF EXISTS wt_uv")
            await db.execute("DROP FUNCTION IF EXISTS wt_uv_slow() CASCADE")
            await db.close()
            await close_pool(pool)

    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(uvloop.run(scenario())))
    thread.start()
    thread.join(60)
    assert out, "the scenario did not finish"
    results, count, alive = out[0]
    assert results == [None] * 40
    assert count == 40
    assert alive, "the writer's loop died"
