"""Refresh on patchy networks (issue 15): a rotated refresh token presented again within the
grace by the same session gets the same successor pair; every other reuse still revokes the
family and ends the user's sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from tests.conftest import StartServer
from tests.helpers import Client
from tests.integration.users_support import REFRESH, sid_of, watch

SETUP = "/api/v1/auth/2fa/setup"


async def _refresh(client: Client, token: str, sid: str | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {"refreshToken": token}
    if sid is not None:
        body["sid"] = sid
    return await client.call("POST", REFRESH, body)


async def test_a_retry_within_the_grace_gets_the_same_pair(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    first = reg["tokens"]
    sid = sid_of(first["accessToken"])
    sock = await client.connect("/customer", first["accessToken"])
    revoked, _ = watch(sock, "/customer")

    status, body = await _refresh(client, first["refreshToken"], sid)
    assert status == 200
    pair = body["tokens"]
    # The response was lost; the app retries with the token it still holds.
    status, body = await _refresh(client, first["refreshToken"], sid)
    assert status == 200, body
    again = body["tokens"]
    assert (again["accessToken"], again["refreshToken"]) == (pair["accessToken"], pair["refreshToken"])
    assert 0 < again["expiresIn"] <= pair["expiresIn"]
    assert sid_of(again["accessToken"]) == sid
    # Nothing was revoked; the pair works and rotates on as usual.
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 2
    assert (await client.call("POST", SETUP, token=again["accessToken"]))[0] == 200
    status, body = await _refresh(client, again["refreshToken"], sid)
    assert status == 200 and body["tokens"]["refreshToken"] != again["refreshToken"]
    assert sock.connected and not revoked.done()


async def test_racing_retries_of_one_token_all_get_the_same_pair(client: Client) -> None:
    reg = await client.register()
    sid = sid_of(reg["tokens"]["accessToken"])
    results = await asyncio.gather(*(_refresh(client, reg["tokens"]["refreshToken"], sid) for _ in range(5)))
    assert [s for s, _ in results] == [200] * 5
    assert len({b["tokens"]["refreshToken"] for _, b in results}) == 1
    assert len({b["tokens"]["accessToken"] for _, b in results}) == 1


async def test_reuse_without_the_session_revokes(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    first = reg["tokens"]
    sock = await client.connect("/customer", first["accessToken"])
    revoked, gone = watch(sock, "/customer")
    assert (await _refresh(client, first["refreshToken"]))[0] == 200
    status, body = await _refresh(client, first["refreshToken"])  # a thief does not know the sid
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert await asyncio.wait_for(revoked, 5) == {"reason": "refresh_reuse"}
    await asyncio.wait_for(gone, 5)
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0


async def test_reuse_naming_another_session_revokes(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    other = await client.call(
        "POST", "/api/v1/auth/login", {"phone": reg["user"]["phone"], "password": reg["password"]}
    )
    other_sid = sid_of(other[1]["tokens"]["accessToken"])
    token = reg["tokens"]["refreshToken"]
    assert (await _refresh(client, token))[0] == 200
    assert (await _refresh(client, token, other_sid))[0] == 401
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reuse'") == 1


async def test_reuse_after_the_grace_revokes(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    sid = sid_of(reg["tokens"]["accessToken"])
    token = reg["tokens"]["refreshToken"]
    status, body = await _refresh(client, token, sid)
    assert status == 200
    await db.execute("UPDATE refresh_tokens SET used_at = used_at - interval '31 seconds' WHERE used_at IS NOT NULL")
    assert (await _refresh(client, token, sid))[0] == 401
    assert (await _refresh(client, body["tokens"]["refreshToken"], sid))[0] == 401  # the family is gone


async def test_an_older_token_revokes_even_within_the_grace(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    sid = sid_of(reg["tokens"]["accessToken"])
    first = reg["tokens"]["refreshToken"]
    status, body = await _refresh(client, first, sid)
    assert status == 200
    second = body["tokens"]["refreshToken"]
    assert (await _refresh(client, second, sid))[0] == 200
    # `first` is two rotations old: its successor was rotated too.
    assert (await _refresh(client, first, sid))[0] == 401
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0


async def test_grace_follows_its_setting(start_server: StartServer, db: asyncpg.Connection) -> None:
    server = await start_server(refresh_grace_seconds=0.0)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        reg = await client.register()
        sid = sid_of(reg["tokens"]["accessToken"])
        assert (await _refresh(client, reg["tokens"]["refreshToken"], sid))[0] == 200
        assert (await _refresh(client, reg["tokens"]["refreshToken"], sid))[0] == 401
        await client.close()


async def test_a_revoked_or_disabled_family_gets_no_replay(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    sid = sid_of(reg["tokens"]["accessToken"])
    token = reg["tokens"]["refreshToken"]
    status, body = await _refresh(client, token, sid)
    assert (await client.call("POST", "/api/v1/auth/logout", {"refreshToken": body["tokens"]["refreshToken"]}))[
        0
    ] == 204
    assert (await _refresh(client, token, sid))[0] == 401

    reg = await client.register()
    sid = sid_of(reg["tokens"]["accessToken"])
    token = reg["tokens"]["refreshToken"]
    assert (await _refresh(client, token, sid))[0] == 200
    await db.execute("UPDATE users SET disabled = true")
    status, body = await _refresh(client, token, sid)
    assert status == 403 and body["error"]["code"] == "forbidden"
