"""Ops control of accounts (issue 15): GET /admin/users, POST /admin/users/{id}/disable and
/enable. Disabling ends the user's sockets on every node at once (two nodes here, sharing
PostgreSQL and Redis), refuses login, refresh, bearer calls and connects, and is audited."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import StartServer
from tests.helpers import Client
from tests.integration.users_support import REFRESH, login, watch

USERS = "/admin/users"


async def _disable(client: Client, user_id: str, reason: str = "chargeback fraud", **kw: Any) -> tuple[int, Any]:
    return await client.call(
        "POST", f"{USERS}/{user_id}/disable", {"reason": reason}, headers=client.admin_headers(), **kw
    )


async def test_disable_ends_sockets_on_two_nodes_and_refuses_everything(
    start_server: StartServer, client: Client, db: asyncpg.Connection
) -> None:
    node2 = await start_server()
    reg = await client.register()
    user_id, phone = reg["user"]["id"], reg["user"]["phone"]
    second = (await login(client, phone))[1]["tokens"]
    bystander = await client.register()
    by_sock = await client.connect("/customer", bystander["tokens"]["accessToken"])
    by_revoked, _ = watch(by_sock, "/customer")

    sock1 = await client.connect("/customer", reg["tokens"]["accessToken"])
    revoked1, gone1 = watch(sock1, "/customer")
    async with aiohttp.ClientSession(base_url=node2.url) as session:
        c2 = Client(session, node2)
        try:
            sock2 = await c2.connect("/customer", second["accessToken"])
            revoked2, gone2 = watch(sock2, "/customer")

            status, body = await _disable(client, user_id)
            assert status == 200, body
            assert body["user"]["disabled"] is True and body["user"]["disabledReason"] == "chargeback fraud"
            assert body["user"]["disabledAt"] is not None and body["offersWithdrawn"] == 0
            # Both nodes' sockets are told and dropped.
            results = await asyncio.wait_for(asyncio.gather(revoked1, revoked2, gone1, gone2), 5)
            assert results[:2] == [{"reason": "account_disabled"}] * 2
            # A socket cannot come back on either node with any token it holds.
            for c, tokens in ((client, reg["tokens"]), (c2, second)):
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await c.connect("/customer", tokens["accessToken"])
        finally:
            await c2.close()

    for tokens in (reg["tokens"], second):
        assert (await client.call("GET", "/api/v1/me", token=tokens["accessToken"]))[0] == 401
        assert (await client.call("POST", REFRESH, {"refreshToken": tokens["refreshToken"]}))[0] == 401
    status, body = await login(client, phone)
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert by_sock.connected and not by_revoked.done()
    row = await db.fetchrow(
        "SELECT actor_id, actor_kind, target_kind, target_id, details FROM audit_log WHERE action = 'user.disable'"
    )
    assert (row["actor_id"], row["actor_kind"], row["target_kind"], row["target_id"]) == (
        None,
        "admin_key",
        "user",
        user_id,
    )
    assert '"reason": "chargeback fraud"' in row["details"] and '"sessionsEnded": 2' in row["details"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND user_id = $1", uuid.UUID(user_id)
        )
        == 0
    )

    # Idempotent: again changes and records nothing.
    assert (await _disable(client, user_id, "again"))[0] == 200
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'user.disable'") == 1
    assert (
        await db.fetchval("SELECT disabled_reason FROM users WHERE id = $1", uuid.UUID(user_id)) == "chargeback fraud"
    )

    # Enabled again: login and sockets work at once.
    status, body = await client.call("POST", f"{USERS}/{user_id}/enable", headers=client.admin_headers())
    assert status == 200 and body["user"]["disabled"] is False and body["user"]["disabledReason"] is None
    status, body = await login(client, phone)
    assert status == 200
    assert (await client.connect("/customer", body["tokens"]["accessToken"])).connected
    assert (await client.call("POST", REFRESH, {"refreshToken": body["tokens"]["refreshToken"]}))[0] == 200
    # The tokens of before stay dead.
    assert (await client.call("GET", "/api/v1/me", token=reg["tokens"]["accessToken"]))[0] == 401
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'user.enable'") == 1


async def test_admin_token_disables_and_is_recorded(client: Client, db: asyncpg.Connection) -> None:
    admin_id = await _make_admin(db, client)
    admin_token = (await login(client, "+2349990000001"))[1]["tokens"]["accessToken"]
    target = await client.register("RIDER")
    status, body = await client.call(
        "POST", f"{USERS}/{target['user']['id']}/disable", {"reason": "abuse"}, token=admin_token
    )
    assert status == 200
    assert await db.fetchval("SELECT actor_id::text FROM audit_log WHERE action = 'user.disable'") == admin_id
    # An admin cannot lock themself out.
    status, body = await client.call("POST", f"{USERS}/{admin_id}/disable", {"reason": "oops"}, token=admin_token)
    assert status == 409 and body["error"]["code"] == "conflict"


async def _make_admin(db: asyncpg.Connection, client: Client) -> str:
    reg = await client.register(phone="+2349990000001")
    await db.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", uuid.UUID(reg["user"]["id"]))
    return str(reg["user"]["id"])


async def test_disable_and_enable_failures(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    uid = reg["user"]["id"]
    token = reg["tokens"]["accessToken"]
    assert (await client.call("POST", f"{USERS}/{uid}/disable", {"reason": "x"}))[0] == 401
    assert (await client.call("POST", f"{USERS}/{uid}/disable", {"reason": "x"}, headers={"X-Admin-Key": "wrong"}))[
        0
    ] == 401
    status, body = await client.call("POST", f"{USERS}/{uid}/disable", {"reason": "x"}, token=token)
    assert status == 403 and body["error"]["code"] == "forbidden"
    for reason in ("", "   ", "x" * 501):
        status, body = await _disable(client, uid, reason)
        assert status == 400 and body["error"]["code"] == "invalid" and "reason" in body["error"]["details"]
    assert (await client.call("POST", f"{USERS}/{uid}/disable", {}, headers=client.admin_headers()))[0] == 400
    assert (await _disable(client, str(uuid.uuid4())))[0] == 404
    assert (await _disable(client, "not-a-uuid"))[0] == 404
    assert (await client.call("POST", f"{USERS}/{uuid.uuid4()}/enable", headers=client.admin_headers()))[0] == 404
    assert await db.fetchval("SELECT disabled FROM users") is False
    assert (await client.call("GET", "/api/v1/me", token=token))[0] == 200


async def test_list_users_by_role_query_and_cursor(client: Client, db: asyncpg.Connection) -> None:
    made = []
    for i in range(5):
        made.append(
            await client.register("VENDOR" if i % 2 else "CUSTOMER", firstName=f"Chioma{i}", email=f"c{i}@example.com")
        )
    h = client.admin_headers()
    status, body = await client.call("GET", f"{USERS}?limit=2", headers=h)
    assert status == 200 and len(body["users"]) == 2 and body["nextCursor"]
    seen = [u["id"] for u in body["users"]]
    while body["nextCursor"]:
        status, body = await client.call("GET", f"{USERS}?limit=2&cursor={body['nextCursor']}", headers=h)
        assert status == 200
        seen += [u["id"] for u in body["users"]]
    assert seen == [m["user"]["id"] for m in reversed(made)]  # newest first, each once

    status, body = await client.call("GET", f"{USERS}?role=VENDOR", headers=h)
    assert {u["id"] for u in body["users"]} == {made[1]["user"]["id"], made[3]["user"]["id"]}
    one = made[2]["user"]
    for q in (one["phone"], "C2@EXAMPLE.COM", one["id"], "chioma2 customer", " CHIOMA2   Customer "):
        async with client.session.get(USERS, params={"q": q}, headers=h) as resp:
            found = await resp.json()
        assert resp.status == 200 and [u["id"] for u in found["users"]] == [one["id"]], (q, found)
    # Names are sealed at rest: whole values match, parts and wildcards do not.
    for q in ("chioma2", "%", "c2@example"):
        async with client.session.get(USERS, params={"q": q}, headers=h) as resp:
            assert (await resp.json())["users"] == [], q
    view = (await client.call("GET", f"{USERS}?q={one['id']}", headers=h))[1]["users"][0]
    assert {"disabled", "disabledAt", "disabledReason", "erasedAt", "locale", "avatarUrl"} <= set(view)
    assert "passwordHash" not in view and "totpSecret" not in view

    for bad in ("role=KING", "limit=0", "limit=201", "cursor=nope", "q=" + "x" * 200):
        status, body = await client.call("GET", f"{USERS}?{bad}", headers=h)
        assert status == 400 and body["error"]["code"] == "invalid", bad
    assert (await client.call("GET", USERS))[0] == 401
