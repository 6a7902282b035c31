"""Password change and password reset by SMS code (issue 15), over real HTTP and Socket.IO
against PostgreSQL and Redis: sessions and sockets that end, codes that fail (wrong, expired,
reused, burnt), answers that do not tell whether a phone has an account, and rate limits."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import socketio

from tests.conftest import StartServer
from tests.helpers import PASSWORD, Client, new_phone
from tests.integration.users_support import (
    NEW_PASSWORD,
    REFRESH,
    RESET_CONFIRM,
    RESET_REQUEST,
    latest_code,
    login,
    other_code,
    texts,
    watch,
)

CHANGE = "/api/v1/me/password"
SETUP = "/api/v1/auth/2fa/setup"  # any bearer route that answers 200 for a live token


async def _alive(client: Client, tokens: dict[str, Any]) -> bool:
    return (await client.call("POST", SETUP, token=tokens["accessToken"]))[0] == 200


# ---------------------------------------------------------------- change


async def test_change_password_ends_every_other_session(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    phone, mine = reg["user"]["phone"], reg["tokens"]
    other = (await login(client, phone))[1]["tokens"]
    my_sock = await client.connect("/customer", mine["accessToken"])
    other_sock = await client.connect("/customer", other["accessToken"])
    my_revoked, _ = watch(my_sock, "/customer")
    revoked, gone = watch(other_sock, "/customer")

    status, body = await client.call(
        "POST", CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}, token=mine["accessToken"]
    )
    assert status == 204 and body is None
    assert await asyncio.wait_for(revoked, 5) == {"reason": "password_changed"}
    await asyncio.wait_for(gone, 5)
    assert not await _alive(client, other)
    assert (await client.call("POST", REFRESH, {"refreshToken": other["refreshToken"]}))[0] == 401
    # The caller's own session goes on.
    assert my_sock.connected and not my_revoked.done() and await _alive(client, mine)
    assert (await client.call("POST", REFRESH, {"refreshToken": mine["refreshToken"]}))[0] == 200
    assert (await login(client, phone))[0] == 401
    assert (await login(client, phone, NEW_PASSWORD))[0] == 200
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.password_changed'") == 1


async def test_change_password_failures(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token = reg["tokens"]["accessToken"]
    stored = await db.fetchval("SELECT password_hash FROM users")
    status, err = await client.call("POST", CHANGE, {"current": "wrong-password", "new": NEW_PASSWORD}, token=token)
    assert status == 400 and err["error"]["details"] == {"current": "wrong password"}
    status, err = await client.call("POST", CHANGE, {"current": PASSWORD, "new": "short"}, token=token)
    assert status == 400 and "new" in err["error"]["details"]
    assert (await client.call("POST", CHANGE, {"new": NEW_PASSWORD}, token=token))[0] == 400
    assert (await client.call("POST", CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}))[0] == 401
    assert await db.fetchval("SELECT password_hash FROM users") == stored
    # Wrong current passwords are limited per user (a stolen access token guessing): 5 in
    # 15 minutes, then even the right one waits.
    for _ in range(4):
        assert (await client.call("POST", CHANGE, {"current": "nope-nope", "new": NEW_PASSWORD}, token=token))[0] == 400
    status, err = await client.call("POST", CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}, token=token)
    assert status == 429 and err["error"]["code"] == "rate_limited"
    assert await db.fetchval("SELECT password_hash FROM users") == stored


# ---------------------------------------------------------------- reset


async def test_reset_sets_the_password_and_ends_every_session(
    start_server: StartServer, client: Client, db: asyncpg.Connection
) -> None:
    reg = await client.register()
    phone, tokens = reg["user"]["phone"], reg["tokens"]
    sock = await client.connect("/customer", tokens["accessToken"])
    revoked, gone = watch(sock, "/customer")

    status, body = await client.call("POST", RESET_REQUEST, {"phone": phone})
    assert status == 202 and body == {"expiresIn": 600}
    code = await latest_code(db, phone, "password_reset")
    status, body = await client.call("POST", RESET_CONFIRM, {"phone": phone, "code": code, "newPassword": NEW_PASSWORD})
    assert status == 204 and body is None
    assert await asyncio.wait_for(revoked, 5) == {"reason": "password_reset"}
    await asyncio.wait_for(gone, 5)
    assert not await _alive(client, tokens)
    assert (await client.call("POST", REFRESH, {"refreshToken": tokens["refreshToken"]}))[0] == 401
    with_old = await login(client, phone)
    assert with_old[0] == 401
    status, body = await login(client, phone, NEW_PASSWORD)
    assert status == 200
    # The new session works at once, sockets included (nothing user-wide blocks it).
    assert await _alive(client, body["tokens"])
    assert (await client.connect("/customer", body["tokens"]["accessToken"])).connected
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert "auth.password_reset_requested" in actions and "auth.password_reset" in actions
    # Single use: the same code again is refused like any wrong code.
    status, err = await client.call("POST", RESET_CONFIRM, {"phone": phone, "code": code, "newPassword": PASSWORD})
    assert status == 400 and err["error"]["code"] == "invalid"
    assert (await login(client, phone, NEW_PASSWORD))[0] == 200


async def _failed_confirm(client: Client, phone: str, code: str) -> tuple[int, Any]:
    return await client.call("POST", RESET_CONFIRM, {"phone": phone, "code": code, "newPassword": NEW_PASSWORD})


async def test_wrong_expired_reused_and_burnt_codes_all_fail_alike(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    phone = reg["user"]["phone"]
    answers = []

    # Wrong code.
    assert (await client.call("POST", RESET_REQUEST, {"phone": phone}))[0] == 202
    code = await latest_code(db, phone, "password_reset")
    answers.append(await _failed_confirm(client, phone, other_code(code)))
    # Expired: the right code, too late.
    await db.execute("UPDATE account_codes SET expires_at = now() - interval '1 second'")
    answers.append(await _failed_confirm(client, phone, code))
    # Burnt: the fifth wrong guess spends the code; the right one is refused after it.
    assert (await client.call("POST", RESET_REQUEST, {"phone": phone}))[0] == 202
    code = await latest_code(db, phone, "password_reset")
    for _ in range(5):
        answers.append(await _failed_confirm(client, phone, other_code(code)))
    answers.append(await _failed_confirm(client, phone, code))
    # A new request retires the earlier code.
    assert (await client.call("POST", RESET_REQUEST, {"phone": phone}))[0] == 202
    newest = await latest_code(db, phone, "password_reset")
    if newest != code:
        answers.append(await _failed_confirm(client, phone, code))
    # No account, no code pending.
    answers.append(await _failed_confirm(client, new_phone(), code))
    other = await client.register()
    answers.append(await _failed_confirm(client, other["user"]["phone"], code))

    assert {(s, b["error"]["code"], b["error"]["message"], str(b["error"]["details"])) for s, b in answers} == {
        (400, "invalid", "wrong or expired code; request a new one if it keeps failing", "{'code': 'wrong or expired'}")
    }
    assert (await login(client, phone))[0] == 200  # the password never changed
    # The newest code still works.
    assert (await _failed_confirm(client, phone, newest))[0] == 204


async def test_reset_request_answers_identically_whoever_asks(client: Client, db: asyncpg.Connection) -> None:
    known = (await client.register())["user"]["phone"]
    disabled = (await client.register())["user"]
    await db.execute("UPDATE users SET disabled = true WHERE id = $1", uuid.UUID(disabled["id"]))
    unknown = new_phone()

    answers = []
    for phone in (known, unknown, disabled["phone"]):
        async with client.session.post(RESET_REQUEST, json={"phone": phone}) as resp:
            answers.append((resp.status, await resp.read(), resp.headers.get("Content-Type")))
    assert len(set(answers)) == 1 and answers[0][0] == 202
    # Only the enabled account got a text.
    assert len(await texts(db, known, "password_reset")) == 1
    assert await texts(db, unknown, "password_reset") == []
    assert await texts(db, disabled["phone"], "password_reset") == []
    # The per-phone limit (3 in 15 minutes) counts every request, so it too looks the same.
    limited = []
    for phone in (known, unknown):
        for _ in range(2):
            assert (await client.call("POST", RESET_REQUEST, {"phone": phone}))[0] == 202
        async with client.session.post(RESET_REQUEST, json={"phone": phone}) as resp:
            body = await resp.json()
            limited.append((resp.status, body["error"]["code"], body["error"]["details"]["limit"]))
    assert limited == [(429, "rate_limited", "reset_request_phone")] * 2
    assert len(await texts(db, known, "password_reset")) == 3
    # Bad input is refused before anything else.
    assert (await client.call("POST", RESET_REQUEST, {"phone": "08030000000"}))[0] == 400
    assert (await client.call("POST", RESET_REQUEST, {}))[0] == 400


async def test_reset_request_is_limited_per_ip(client: Client, db: asyncpg.Connection) -> None:
    """One client walking through phone numbers: 20 requests per 15 minutes from an IP."""
    for _ in range(20):
        assert (await client.call("POST", RESET_REQUEST, {"phone": new_phone()}))[0] == 202
    status, err = await client.call("POST", RESET_REQUEST, {"phone": new_phone()})
    assert status == 429 and err["error"]["details"]["limit"] == "reset_request_ip"


async def test_reset_confirm_is_limited_per_ip(client: Client, db: asyncpg.Connection) -> None:
    for _ in range(30):
        assert (await _failed_confirm(client, new_phone(), "123456"))[0] == 400
    status, err = await _failed_confirm(client, new_phone(), "123456")
    assert status == 429 and err["error"]["details"]["limit"] == "reset_confirm_ip"


async def test_reset_refuses_bad_input(client: Client) -> None:
    reg = await client.register()
    phone = reg["user"]["phone"]
    for body in (
        {"phone": phone, "code": "123456"},
        {"phone": phone, "code": "123456", "newPassword": "short"},
        {"phone": phone, "newPassword": NEW_PASSWORD},
        {"code": "123456", "newPassword": NEW_PASSWORD},
    ):
        status, err = await client.call("POST", RESET_CONFIRM, body)
        assert status == 400 and err["error"]["code"] == "invalid"
    assert (await login(client, phone))[0] == 200


async def test_reset_ends_sockets_on_another_node(
    start_server: StartServer, client: Client, db: asyncpg.Connection
) -> None:
    node2 = await start_server()
    reg = await client.register()
    phone = reg["user"]["phone"]
    sio = socketio.AsyncClient(reconnection=False)
    revoked, gone = watch(sio, "/customer")
    await sio.connect(
        node2.url, namespaces=["/customer"], auth={"token": reg["tokens"]["accessToken"]}, transports=["websocket"]
    )
    try:
        assert (await client.call("POST", RESET_REQUEST, {"phone": phone}))[0] == 202
        code = await latest_code(db, phone, "password_reset")
        assert (await _failed_confirm(client, phone, code))[0] == 204
        assert await asyncio.wait_for(revoked, 5) == {"reason": "password_reset"}
        await asyncio.wait_for(gone, 5)
    finally:
        if sio.connected:
            await sio.disconnect()
