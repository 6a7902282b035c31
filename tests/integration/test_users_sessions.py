"""GET/DELETE /api/v1/me/sessions (issue 15): each refresh-token family with its client, and
ending one session ends its live sockets (session:revoked) and nothing else."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import aiohttp
import asyncpg

from tests.conftest import StartServer
from tests.helpers import Client
from tests.integration.users_support import REFRESH, sid_of, watch

SESSIONS = "/api/v1/me/sessions"


async def test_sessions_list_each_login_with_its_client(client: Client) -> None:
    reg = await client.register()
    phone = reg["user"]["phone"]
    status, body = await client.call(
        "POST",
        "/api/v1/auth/login",
        {"phone": phone, "password": reg["password"]},
        headers={"User-Agent": "PochoApp/2.1 (Android 14)"},
    )
    assert status == 200
    phone_tokens = body["tokens"]
    # A refresh is activity: lastUsedAt moves, createdAt stays the login's.
    status, body = await client.call(
        "POST",
        REFRESH,
        {"refreshToken": phone_tokens["refreshToken"]},
        headers={"User-Agent": "PochoApp/2.2 (Android 14)"},
    )
    assert status == 200
    phone_tokens = body["tokens"]

    status, body = await client.call("GET", SESSIONS, token=reg["tokens"]["accessToken"])
    assert status == 200
    sessions = body["sessions"]
    assert [s["sid"] for s in sessions] == [sid_of(phone_tokens["accessToken"]), sid_of(reg["tokens"]["accessToken"])]
    newest, first = sessions
    assert set(newest) == {"sid", "createdAt", "lastUsedAt", "userAgent", "ipPrefix", "current"}
    assert newest["userAgent"] == "PochoApp/2.2 (Android 14)" and newest["ipPrefix"] == "127.0.0.0/24"
    assert datetime.fromisoformat(newest["lastUsedAt"]) > datetime.fromisoformat(newest["createdAt"])
    assert (newest["current"], first["current"]) == (False, True)
    assert first["createdAt"] == first["lastUsedAt"]


async def test_ending_a_session_ends_its_sockets_only(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    mine = reg["tokens"]
    status, body = await client.call(
        "POST", "/api/v1/auth/login", {"phone": reg["user"]["phone"], "password": reg["password"]}
    )
    other = body["tokens"]
    other_sid = sid_of(other["accessToken"])
    my_sock = await client.connect("/customer", mine["accessToken"])
    other_sock = await client.connect("/customer", other["accessToken"])
    my_revoked, _ = watch(my_sock, "/customer")
    revoked, gone = watch(other_sock, "/customer")

    status, body = await client.call("DELETE", f"{SESSIONS}/{other_sid}", token=mine["accessToken"])
    assert status == 204 and body is None
    assert await asyncio.wait_for(revoked, 5) == {"reason": "session_ended"}
    await asyncio.wait_for(gone, 5)
    assert (await client.call("POST", REFRESH, {"refreshToken": other["refreshToken"]}))[0] == 401
    assert (await client.call("GET", "/api/v1/me", token=other["accessToken"]))[0] == 401
    assert my_sock.connected and not my_revoked.done()
    status, body = await client.call("GET", SESSIONS, token=mine["accessToken"])
    assert [s["sid"] for s in body["sessions"]] == [sid_of(mine["accessToken"])]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'auth.session_ended' AND target_id = $1", other_sid
        )
        == 1
    )
    # Gone already; and ending the caller's own session works like a logout.
    assert (await client.call("DELETE", f"{SESSIONS}/{other_sid}", token=mine["accessToken"]))[0] == 404
    assert (await client.call("DELETE", f"{SESSIONS}/{sid_of(mine['accessToken'])}", token=mine["accessToken"]))[
        0
    ] == 204
    assert (await client.call("GET", SESSIONS, token=mine["accessToken"]))[0] == 401


async def test_another_users_session_is_not_found(client: Client) -> None:
    a, b = await client.register(), await client.register()
    b_sid = sid_of(b["tokens"]["accessToken"])
    status, body = await client.call("DELETE", f"{SESSIONS}/{b_sid}", token=a["tokens"]["accessToken"])
    assert status == 404 and body["error"]["code"] == "not_found"
    assert (await client.call("GET", "/api/v1/me", token=b["tokens"]["accessToken"]))[0] == 200
    assert (await client.call("DELETE", f"{SESSIONS}/not-a-uuid", token=a["tokens"]["accessToken"]))[0] == 404
    assert (await client.call("DELETE", f"{SESSIONS}/{uuid.uuid4()}", token=a["tokens"]["accessToken"]))[0] == 404
    assert (await client.call("GET", SESSIONS))[0] == 401


async def test_ending_a_session_reaches_its_socket_on_another_node(start_server: StartServer, client: Client) -> None:
    node2 = await start_server()
    reg = await client.register()
    status, body = await client.call(
        "POST", "/api/v1/auth/login", {"phone": reg["user"]["phone"], "password": reg["password"]}
    )
    assert status == 200
    other = body["tokens"]
    async with aiohttp.ClientSession(base_url=node2.url) as session:
        c2 = Client(session, node2)
        try:
            sock = await c2.connect("/customer", other["accessToken"])
            revoked, gone = watch(sock, "/customer")
            sid = sid_of(other["accessToken"])
            assert (await client.call("DELETE", f"{SESSIONS}/{sid}", token=reg["tokens"]["accessToken"]))[0] == 204
            assert await asyncio.wait_for(revoked, 5) == {"reason": "session_ended"}
            await asyncio.wait_for(gone, 5)
        finally:
            await c2.close()
