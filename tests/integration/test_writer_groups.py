"""What one group commit of the writer (persistence/writer.py) sends to a real PostgreSQL: a
group's inserts as one JSON document or one array per column (the same rows stored either way),
a statement's `many` form run once per group, and a fence per submission (a stale write beside
a fresh one for the same shard is refused alone)."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import orjson
import pytest

from engine.errors import EngineError
from persistence import shards
from persistence.db import RawJson
from persistence.writer import Statement, Writer
from tests.integration.writer_support import dropping, running, scratch


async def test_bulk_json_rows_store_exactly_what_arrays_store(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    """A group's inserts as one JSON document per table (`bulk_json`, the default) store every
    value exactly as one array per column does: text with quotes, backslashes and non-ASCII,
    NULLs, 64-bit integers, doubles, booleans, times to the microsecond in any offset, jsonb
    given as RawJson, a dict or a plain string. A group with a value JSON would change (NaN,
    infinity, -0.0, a naive time) goes as arrays; a column type outside `_JSON_SAFE` (bytea)
    keeps its statement on arrays."""
    cols = "id, u, t, i2, i4, i8, f8, b, ts, j"
    ddl = (
        " ".join(
            f"""CREATE TABLE {name} (id int PRIMARY KEY, u uuid, t text, i2 smallint, i4 int, i8 bigint,
                f8 double precision, b boolean, ts timestamptz, j jsonb);"""
            for name in ("wt_json", "wt_arrays")
        )
        + "CREATE TABLE wt_bytes (id int PRIMARY KEY, raw bytea);"
    )
    lagos = timezone(timedelta(hours=1))
    rows = [
        (
            1,
            "8a0b2f7e-57a1-4d0e-9c1e-0d6f1b2a3c4d",
            'quote " back \\ slash',
            -32768,
            2**31 - 1,
            2**63 - 1,
            0.1,
            True,
            datetime(2026, 11, 29, 13, 1, 2, 345678, tzinfo=UTC),
            RawJson('{"a": [1, 2.5, "x"], "seq": 3}'),
        ),
        (
            2,
            uuid.UUID("00000000-0000-0000-0000-000000000001"),
            "naïve ₦ 🍲",
            0,
            -1,
            -(2**63),
            -1e-300,
            False,
            datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=lagos),
            {"k": "v", "n": None},
        ),
        (3, None, "", None, None, None, 12345678.125, None, None, "just a string"),
        (4, None, None, None, None, None, None, None, None, None),
    ]
    risky = [  # sent after the rows above, in a group of their own
        (5, None, None, None, None, None, -0.0, None, datetime(2026, 6, 1, 12, 0, 0), None),  # naive: local time
        (6, None, None, None, None, None, math.inf, None, None, None),
        (7, None, None, None, None, None, math.nan, None, None, None),
    ]
    stmts = {
        name: Statement(
            f"ins_{name}", f"INSERT INTO {name} ({cols}) VALUES ({','.join(f'${i}' for i in range(1, 11))})", 1
        )
        for name in ("wt_json", "wt_arrays")
    }
    raw = Statement("ins_bytes", "INSERT INTO wt_bytes (id, raw) VALUES ($1,$2)", 2)
    async with scratch(db, ddl, "wt_json", "wt_arrays", "wt_bytes"):
        for name, json in (("wt_json", True), ("wt_arrays", False)):
            async with running(Writer(pool, flush_ms=20, bulk_json=json)) as writer:
                futs = [writer.submit([(stmts[name], row)]) for row in rows]
                futs.append(writer.submit([(raw, (1, b"\x00\xff")), (raw, (2, b""))]))
                assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [None] * 5
                futs = [writer.submit([(stmts[name], row)]) for row in risky]
                assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [None] * 3
                await db.execute("TRUNCATE wt_bytes")
                forms = writer._types  # how each statement went in bulk (asked of the server once)
                assert (forms[stmts[name].sql].json is not None) is json  # type: ignore[union-attr]
                assert forms[raw.sql].json is None  # type: ignore[union-attr]
                sent = {form for key in writer._merged for sql, form in key if sql == stmts[name].sql}
                assert sent == ({True, False} if json else {False})  # the risky group went as arrays
        stored = {
            name: [tuple(r) for r in await db.fetch(f"SELECT {cols} FROM {name} ORDER BY id")]
            for name in ("wt_json", "wt_arrays")
        }
    nan = [r[6] for r in stored["wt_json"] + stored["wt_arrays"] if r[0] == 7]
    assert len(nan) == 2 and all(math.isnan(v) for v in nan)  # NaN, not NULL (JSON has no NaN)
    assert stored["wt_json"][:-1] == stored["wt_arrays"][:-1]
    first, second, third, fourth, zero, inf, _ = stored["wt_json"]
    assert math.copysign(1.0, zero[6]) == -1.0 and inf[6] == math.inf
    assert zero[8] == datetime(2026, 6, 1, 12, 0, 0).astimezone(UTC)  # asyncpg's reading of a naive time
    assert first[2] == 'quote " back \\ slash' and first[5] == 2**63 - 1 and first[6] == 0.1
    assert first[8] == datetime(2026, 11, 29, 13, 1, 2, 345678, tzinfo=UTC)
    assert orjson.loads(first[9]) == {"a": [1, 2.5, "x"], "seq": 3}  # `db` reads jsonb as text
    assert second[2] == "naïve ₦ 🍲" and second[6] == -1e-300 and second[7] is False
    assert second[8] == datetime(2025, 12, 31, 23, 0, 0, 1, tzinfo=UTC)
    assert orjson.loads(second[9]) == {"k": "v", "n": None}
    assert orjson.loads(third[9]) == "just a string"
    assert fourth == (4, None, None, None, None, None, None, None, None, None)


async def test_a_statement_with_many_runs_once_per_group(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    """`Statement.many` (the shard fence's form): one call with one array per parameter for all
    of a group's rows, in place of one execution per row; a refusal still fails only its own
    submission (the group is retried one submission at a time)."""
    ddl = """
        CREATE TABLE wt_calls (rows int NOT NULL, ids int[] NOT NULL, tx bigint NOT NULL DEFAULT txid_current());
        CREATE OR REPLACE FUNCTION wt_check_all(p_ids int[], p_tags text[]) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF 'bad' = ANY(p_tags) THEN RAISE EXCEPTION 'refused' USING ERRCODE = 'PF999'; END IF;
            INSERT INTO wt_calls (rows, ids) VALUES (array_length(p_ids, 1), p_ids);
        END $$;
    """
    row_at_a_time = "SELECT wt_check_all(ARRAY[$1::int], ARRAY[$2::text])"
    check = Statement("check", row_at_a_time, order=0, key=0, many="SELECT wt_check_all($1::int[], $2::text[])")
    async with (
        dropping(db, "wt_check_all(int[], text[])"),
        scratch(db, ddl, "wt_calls"),
        running(Writer(pool, flush_ms=20)) as writer,
    ):
        futs = [writer.submit([(check, (i, "ok"))]) for i in range(5)] + [writer.submit([(check, (0, "ok"))])]
        assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [None] * 6
        calls = await db.fetch("SELECT rows, ids FROM wt_calls")
        assert [(r["rows"], r["ids"]) for r in calls] == [(5, [0, 1, 2, 3, 4])]  # one call, keyed rows coalesced

        await db.execute("TRUNCATE wt_calls")
        good = writer.submit([(check, (1, "ok"))])
        bad = writer.submit([(check, (2, "bad"))])
        results = await asyncio.wait_for(asyncio.gather(good, bad, return_exceptions=True), 5)
        assert results[0] is None
        assert isinstance(results[1], EngineError) and results[1].code == "unavailable"
        assert [r["ids"] for r in await db.fetch("SELECT ids FROM wt_calls")] == [[1]]


async def test_a_stale_write_beside_a_fresh_one_for_the_same_shard_is_refused(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    """One group holding a write queued under an epoch the node has since lost and one under
    the epoch it took back, for the same shard: both are checked, the stale one is refused
    alone (the group is retried one by one), the fresh one commits."""
    lost = await shards.take(db, 21, "n1")
    current = await shards.take(db, 21, "n1")  # lost, then taken back under a newer epoch
    assert lost is not None and current is not None and current > lost
    await db.execute("CREATE TABLE fence_pair (k text)")
    insert = Statement("fence_pair", "INSERT INTO fence_pair (k) VALUES ($1)", 10)
    try:
        async with running(Writer(pool, flush_ms=20)) as writer:
            stale = writer.submit([(shards.FENCE, (21, lost)), (insert, ("stale",))])
            fresh = writer.submit([(shards.FENCE, (21, current)), (insert, ("fresh",))])
            await fresh
            with pytest.raises(EngineError) as refused:
                await stale
        assert refused.value.code == "unavailable" and shards.stale_shard(refused.value) == 21
        assert [r["k"] for r in await db.fetch("SELECT k FROM fence_pair")] == ["fresh"]
    finally:
        await db.execute("DROP TABLE fence_pair")
