"""Personal data at rest (issue 15) against PostgreSQL: rows sealed on write and found by
blind index, rows from before encryption still working, and a key rotation with the
`pocho-rt pii-rotate` command while old and new keys are both configured."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import aiohttp
import asyncpg

from pocho_rt.auth.passwords import hash_password
from pocho_rt.config import DEV_PII_INDEX_KEY, DEV_PII_KEY
from tests.conftest import StartServer
from tests.helpers import PASSWORD, Client, new_phone
from tests.integration.users_support import ME, login

INDEX2 = "SW5kZXgta2V5LXR3by0zMi1ieXRlcy1sb25nLWVub3VnaA"


async def _legacy_user(db: asyncpg.Connection, phone: str) -> str:
    """A row as written before migration 0005: plaintext personal columns, no indexes."""
    uid = uuid.uuid4()
    await db.execute(
        """INSERT INTO users (id, phone, password_hash, role, first_name, last_name, email)
           VALUES ($1, $2, $3, 'CUSTOMER', 'Legacy', 'Person', 'legacy@example.com')""",
        uid,
        phone,
        await hash_password(PASSWORD),
    )
    return str(uid)


async def test_users_are_sealed_and_rows_from_before_still_work(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register(email="Ada@Example.com")
    raw = await db.fetchrow("SELECT * FROM users WHERE id = $1", uuid.UUID(reg["user"]["id"]))
    for column in ("phone", "first_name", "last_name", "email"):
        assert raw[column].startswith("pii1.dev."), column
    assert reg["user"]["phone"] not in str(dict(raw)) and "Ada@Example.com" not in str(dict(raw))
    assert raw["phone_index"] and raw["email_index"] and raw["name_index"]
    assert (await login(client, reg["user"]["phone"]))[0] == 200
    assert (await client.call("POST", "/api/v1/auth/register", {**_body(reg["user"]["phone"])}))[0] == 409

    legacy_phone = new_phone()
    legacy_id = await _legacy_user(db, legacy_phone)
    status, body = await login(client, legacy_phone)
    assert status == 200 and body["user"]["id"] == legacy_id and body["user"]["firstName"] == "Legacy"
    status, me = await client.call("GET", ME, token=body["tokens"]["accessToken"])
    assert status == 200 and (me["phone"], me["email"]) == (legacy_phone, "legacy@example.com")
    # Its number cannot be registered twice, though it has no blind index yet.
    status, err = await client.call("POST", "/api/v1/auth/register", _body(legacy_phone))
    assert status == 409 and err["error"]["code"] == "conflict"
    # Ops find it by its plaintext phone and email.
    for q in (legacy_phone, "LEGACY@example.com"):
        async with client.session.get("/admin/users", params={"q": q}, headers=client.admin_headers()) as resp:
            assert [u["id"] for u in (await resp.json())["users"]] == [legacy_id], q
    # A profile change seals what it writes.
    status, _ = await client.call("PATCH", ME, {"firstName": "Renamed"}, token=body["tokens"]["accessToken"])
    assert status == 200
    row = await db.fetchrow("SELECT first_name, last_name, name_index FROM users WHERE id = $1", uuid.UUID(legacy_id))
    assert row["first_name"].startswith("pii1.") and row["last_name"] == "Person" and row["name_index"]


def _body(phone: str) -> dict[str, str]:
    return {"phone": phone, "password": PASSWORD, "role": "CUSTOMER", "firstName": "A", "lastName": "B"}


async def _cli(database_url: str, redis_url: str, *args: str, **env: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pocho_rt.cli",
        *args,
        env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_key_rotation_with_the_cli(
    start_server: StartServer, db: asyncpg.Connection, database_url: str, redis_url: str
) -> None:
    first = await start_server()
    async with aiohttp.ClientSession(base_url=first.url) as session:
        c1 = Client(session, first)
        old_user = await c1.register(email="old@example.com")
    legacy_phone = new_phone()
    await _legacy_user(db, legacy_phone)

    keys = await _cli(database_url, redis_url, "pii-keygen", "--kid", "k2")
    new_key = keys.split("POCHO_PII_KEY=")[1].split()[0]
    assert new_key.startswith("k2:") and "POCHO_PII_INDEX_KEY=" in keys
    rotated = {
        "pii_key": new_key,
        "pii_old_keys": DEV_PII_KEY,
        "pii_index_key": INDEX2,
        "pii_old_index_key": DEV_PII_INDEX_KEY,
    }
    during = await start_server(**rotated)
    async with aiohttp.ClientSession(base_url=during.url) as session:
        c2 = Client(session, during)
        # Old rows are read and found with the old keys; new rows are sealed with the new one.
        assert (await login(c2, old_user["user"]["phone"]))[0] == 200
        assert (await login(c2, legacy_phone))[0] == 200
        new_user = await c2.register()
    assert (await db.fetchval("SELECT phone FROM users WHERE id = $1", uuid.UUID(new_user["user"]["id"]))).startswith(
        "pii1.k2."
    )

    out = await _cli(
        database_url,
        redis_url,
        "pii-rotate",
        "--batch",
        "2",
        POCHO_PII_KEY=new_key,
        POCHO_PII_OLD_KEYS=DEV_PII_KEY,
        POCHO_PII_INDEX_KEY=INDEX2,
        POCHO_PII_OLD_INDEX_KEY=DEV_PII_INDEX_KEY,
    )
    assert "3 users seen, 2 re-sealed under key 'k2'" in out, out
    for row in await db.fetch("SELECT phone, first_name, last_name, email FROM users"):
        assert all(v is None or v.startswith("pii1.k2.") for v in row.values()), dict(row)
    again = await _cli(database_url, redis_url, "pii-rotate", POCHO_PII_KEY=new_key, POCHO_PII_INDEX_KEY=INDEX2)
    assert "3 users seen, 0 re-sealed" in again  # idempotent

    # The old keys can go: everyone is read and found with the new ones alone.
    after = await start_server(pii_key=new_key, pii_index_key=INDEX2)
    async with aiohttp.ClientSession(base_url=after.url) as session:
        c3 = Client(session, after)
        for phone in (old_user["user"]["phone"], legacy_phone, new_user["user"]["phone"]):
            status, body = await login(c3, phone)
            assert status == 200, phone
        status, me = await c3.call("GET", ME, token=body["tokens"]["accessToken"])
        assert me["phone"] == new_user["user"]["phone"]
        async with session.get("/admin/users", params={"q": "old@example.com"}, headers=c3.admin_headers()) as resp:
            assert [u["id"] for u in (await resp.json())["users"]] == [old_user["user"]["id"]]
