"""Accounts and tokens (PROTOCOL): register, login, refresh rotation, logout, 2FA, phone
verification, and bearer failures, over real HTTP and Socket.IO against PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from typing import Any

import asyncpg
import jwt
import pytest
import socketio
from jwt.warnings import InsecureKeyLengthWarning

from pocho_rt.auth import totp
from tests.helpers import PASSWORD, Client, eventually, new_phone
from tests.integration.users_support import latest_code, watch

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
SETUP = "/api/v1/auth/2fa/setup"


def _payload(**over: Any) -> dict[str, Any]:
    return {
        "phone": new_phone(),
        "password": PASSWORD,
        "role": "CUSTOMER",
        "firstName": "Ada",
        "lastName": "Obi",
        **over,
    }


async def _login(client: Client, phone: str, password: str = PASSWORD, **extra: Any) -> tuple[int, Any]:
    return await client.call("POST", LOGIN, {"phone": phone, "password": password, **extra})


async def _count(db: asyncpg.Connection, table: str) -> int:
    n: int = await db.fetchval(f"SELECT count(*) FROM {table}")
    return n


# ---------------------------------------------------------------- register


async def test_register_returns_user_and_working_tokens(client: Client, db: asyncpg.Connection) -> None:
    payload = _payload(email="ada@example.com", role="VENDOR")
    status, body = await client.call("POST", REGISTER, payload)
    assert status == 201, body
    user, tokens = body["user"], body["tokens"]
    assert set(user) == {
        "id",
        "phone",
        "role",
        "firstName",
        "lastName",
        "email",
        "phoneVerified",
        "totpEnabled",
        "createdAt",
    }
    assert user["phone"] == payload["phone"] and user["role"] == "VENDOR" and user["email"] == "ada@example.com"
    assert user["phoneVerified"] is False and user["totpEnabled"] is False
    assert set(tokens) == {"accessToken", "refreshToken", "expiresIn"}
    assert tokens["expiresIn"] == client.server.svc.settings.jwt_access_ttl
    claims = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
    assert claims["sub"] == user["id"] and claims["role"] == "VENDOR"
    # The refresh token is stored only as a hash, in the family named by the JWT sid.
    row = await db.fetchrow("SELECT token_hash, family_id::text AS fam FROM refresh_tokens")
    assert row["token_hash"] != tokens["refreshToken"] and len(row["token_hash"]) == 64
    assert row["fam"] == claims["sid"]
    stored = await db.fetchrow("SELECT password_hash FROM users WHERE id = $1::uuid", user["id"])
    assert stored["password_hash"].startswith("$argon2id$")
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.register'") == 1
    status, body = await client.call("POST", SETUP, token=tokens["accessToken"])
    assert status == 200 and body["secret"]


async def test_register_duplicate_phone_is_409(client: Client, db: asyncpg.Connection) -> None:
    payload = _payload()
    assert (await client.call("POST", REGISTER, payload))[0] == 201
    status, body = await client.call("POST", REGISTER, {**payload, "firstName": "Other"})
    assert status == 409 and body["error"]["code"] == "conflict"
    assert await _count(db, "users") == 1 and await _count(db, "refresh_tokens") == 1


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"role": "ADMIN"}, "role"),
        ({"role": "SUPERUSER"}, "role"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"phone": "08012345678"}, "phone"),
        ({"phone": "+234-801-234"}, "phone"),
        ({"phone": "+1234567"}, "phone"),
        ({"phone": "+1234567890123456"}, "phone"),
        ({"firstName": ""}, "firstName"),
        ({"firstName": "   "}, "firstName"),
        ({"lastName": "x" * 65}, "lastName"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@" + "b" * 250 + ".ng"}, "email"),
        ({"phone": None}, "phone"),
        ({"password": 12345678}, "password"),
    ],
)
async def test_register_rejects_bad_input(
    client: Client, db: asyncpg.Connection, over: dict[str, Any], field: str
) -> None:
    status, body = await client.call("POST", REGISTER, _payload(**over))
    assert status == 400, body
    assert body["error"]["code"] == "invalid" and field in body["error"]["details"]
    assert await _count(db, "users") == 0


async def test_register_missing_field_and_non_object(client: Client, db: asyncpg.Connection) -> None:
    payload = _payload()
    del payload["lastName"]
    status, body = await client.call("POST", REGISTER, payload)
    assert status == 400 and body["error"]["details"] == {"lastName": "required"}
    status, body = await client.call("POST", REGISTER, data=b"[1,2]", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid"
    status, body = await client.call("POST", REGISTER, data=b"{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid"
    assert await _count(db, "users") == 0


# ---------------------------------------------------------------- login


async def test_login_ok_and_failures(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register("RIDER")
    phone = reg["user"]["phone"]
    status, body = await _login(client, phone)
    assert status == 200, body
    assert body["user"]["id"] == reg["user"]["id"] and set(body["tokens"]) == {
        "accessToken",
        "refreshToken",
        "expiresIn",
    }
    sid_login = jwt.decode(body["tokens"]["accessToken"], options={"verify_signature": False})["sid"]
    sid_reg = jwt.decode(reg["tokens"]["accessToken"], options={"verify_signature": False})["sid"]
    assert sid_login != sid_reg  # every login is a new session

    wrong = await _login(client, phone, "wrong-password-1")
    unknown = await _login(client, new_phone())
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    assert wrong[1]["error"]["code"] == "unauthorized"
    assert (await _login(client, phone, "x" * 2000))[0] == 400
    assert (await client.call("POST", LOGIN, {"phone": phone}))[0] == 400
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["auth.register", "auth.login", "auth.login_failed"]


async def test_login_logs_mask_phone_and_hide_password(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    reg = await client.register()
    phone = reg["user"]["phone"]
    with caplog.at_level("INFO", logger="pocho.auth"):
        assert (await _login(client, phone, "not-the-password"))[0] == 401
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "login failed" in text and phone not in text and "not-the-password" not in text
    assert phone[-4:] in text


async def test_disabled_user_cannot_log_in(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    await db.execute("UPDATE users SET disabled = true WHERE id = $1::uuid", reg["user"]["id"])
    status, body = await _login(client, reg["user"]["phone"])
    assert status == 403 and body["error"]["code"] == "forbidden"
    # Wrong password stays 401: a disabled account is not revealed without the password.
    assert (await _login(client, reg["user"]["phone"], "wrong-password-1"))[0] == 401
    status, body = await client.call("POST", REFRESH, {"refreshToken": reg["tokens"]["refreshToken"]})
    assert status == 403


# ---------------------------------------------------------------- 2FA


def _not_a_code(secret: str, now: float) -> str:
    """A well-formed code that matches no step the server accepts around `now` (nor a bit later)."""
    near = {totp.code_at(secret, now + k * totp.STEP) for k in range(-3, 4)}
    return next(c for c in (f"{i:06d}" for i in range(10)) if c not in near)


def _old_code(secret: str, now: float) -> str:
    """The code of a step long past that happens to equal no code the server accepts around `now`."""
    near = {totp.code_at(secret, now + k * totp.STEP) for k in range(-3, 4)}
    return next(c for k in range(10, 20) if (c := totp.code_at(secret, now - k * totp.STEP)) not in near)


async def _enable_totp(client: Client, token: str) -> str:
    status, body = await client.call("POST", SETUP, token=token)
    assert status == 200, body
    secret = body["secret"]
    status, body = await client.call(
        "POST", "/api/v1/auth/2fa/enable", {"code": totp.code_at(secret, time.time())}, token=token
    )
    assert status == 200 and body == {"totpEnabled": True}
    return str(secret)


async def test_totp_setup_enable_disable(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token, phone = reg["tokens"]["accessToken"], reg["user"]["phone"]
    enable, disable = "/api/v1/auth/2fa/enable", "/api/v1/auth/2fa/disable"
    # enable before setup: nothing to enable
    status, body = await client.call("POST", enable, {"code": "123456"}, token=token)
    assert status == 409
    status, body = await client.call("POST", SETUP, token=token)
    assert status == 200
    secret = body["secret"]
    assert body["otpauthUri"].startswith("otpauth://totp/Pocho:")
    assert f"secret={secret}" in body["otpauthUri"] and "issuer=Pocho" in body["otpauthUri"]
    assert phone.lstrip("+") in body["otpauthUri"]
    row = await db.fetchrow("SELECT totp_secret, totp_enabled FROM users WHERE id = $1", uuid.UUID(reg["user"]["id"]))
    assert row["totp_secret"] == secret and row["totp_enabled"] is False  # pending only
    # Pending secret: login still needs no code.
    assert (await _login(client, phone))[0] == 200
    now = time.time()
    wrong = _not_a_code(secret, now)
    for bad in (wrong, "abc", _old_code(secret, now)):
        status, body = await client.call("POST", enable, {"code": bad}, token=token)
        assert status == 400 and body["error"]["code"] == "invalid", bad
    assert (await client.call("POST", enable, {}, token=token))[0] == 400
    status, body = await client.call("POST", enable, {"code": totp.code_at(secret, time.time())}, token=token)
    assert status == 200 and body == {"totpEnabled": True}
    assert (await client.call("POST", SETUP, token=token))[0] == 409  # already on
    status, body = await client.call("POST", disable, {"code": wrong}, token=token)
    assert status == 400 and body["error"]["code"] == "invalid"
    status, body = await client.call("POST", disable, {"code": totp.code_at(secret, time.time())}, token=token)
    assert status == 200 and body == {"totpEnabled": False}
    row = await db.fetchrow("SELECT totp_secret, totp_enabled FROM users WHERE id = $1", uuid.UUID(reg["user"]["id"]))
    assert row["totp_secret"] is None and row["totp_enabled"] is False
    assert (await client.call("POST", disable, {"code": "123456"}, token=token))[0] == 409
    actions = {r["action"] for r in await db.fetch("SELECT action FROM audit_log")}
    assert {"auth.2fa_enable", "auth.2fa_disable"} <= actions
    for path in (SETUP, enable, disable):
        assert (await client.call("POST", path, {"code": "123456"}))[0] == 401


async def test_login_with_totp(client: Client) -> None:
    reg = await client.register()
    phone = reg["user"]["phone"]
    secret = await _enable_totp(client, reg["tokens"]["accessToken"])
    status, body = await _login(client, phone)
    assert status == 401 and body["error"]["code"] == "totp_required"
    # The password is still checked first: a wrong one is plain unauthorized.
    status, body = await _login(client, phone, "wrong-password-1")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    now = time.time()
    wrong = _not_a_code(secret, now)
    status, body = await _login(client, phone, totp=wrong)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    code = totp.code_at(secret, now)
    status, body = await _login(client, phone, totp=code)
    assert status == 200, body
    assert body["user"]["totpEnabled"] is True
    # A code works once (RFC 6238 section 5.2); the next step's code still works.
    assert (await _login(client, phone, totp=code))[0] == 401
    assert (await _login(client, phone, totp=totp.code_at(secret, now + 30)))[0] == 200


# ---------------------------------------------------------------- refresh, reuse, logout


async def test_refresh_rotates_and_reuse_revokes_family(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    first = reg["tokens"]
    status, body = await client.call("POST", REFRESH, {"refreshToken": first["refreshToken"]})
    assert status == 200, body
    second = body["tokens"]
    assert second["refreshToken"] != first["refreshToken"]
    sid = jwt.decode(first["accessToken"], options={"verify_signature": False})["sid"]
    assert jwt.decode(second["accessToken"], options={"verify_signature": False})["sid"] == sid
    status, body = await client.call("POST", REFRESH, {"refreshToken": second["refreshToken"]})
    assert status == 200
    newest = body["tokens"]
    assert (await client.call("POST", SETUP, token=newest["accessToken"]))[0] == 200
    sock = await client.connect("/customer", newest["accessToken"])
    revoked, gone = watch(sock, "/customer")

    # An old, rotated token comes back: the whole family dies.
    status, body = await client.call("POST", REFRESH, {"refreshToken": first["refreshToken"]})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert await asyncio.wait_for(revoked, 5) == {"reason": "refresh_reuse"}
    await asyncio.wait_for(gone, 5)
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0
    assert (await client.call("POST", REFRESH, {"refreshToken": newest["refreshToken"]}))[0] == 401
    for tok in (first, second, newest):
        assert (await client.call("POST", SETUP, token=tok["accessToken"]))[0] == 401
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect("/customer", newest["accessToken"])
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reuse'") == 1


async def test_reuse_leaves_other_sessions_tokens_valid(client: Client) -> None:
    reg = await client.register()
    other = (await _login(client, reg["user"]["phone"]))[1]["tokens"]
    old = reg["tokens"]["refreshToken"]
    assert (await client.call("POST", REFRESH, {"refreshToken": old}))[0] == 200
    assert (await client.call("POST", REFRESH, {"refreshToken": old}))[0] == 401
    assert (await client.call("POST", SETUP, token=other["accessToken"]))[0] == 200
    assert (await client.call("POST", REFRESH, {"refreshToken": other["refreshToken"]}))[0] == 200


async def test_concurrent_refresh_with_one_token_succeeds_once(client: Client) -> None:
    reg = await client.register()
    body = {"refreshToken": reg["tokens"]["refreshToken"]}
    results = await asyncio.gather(*(client.call("POST", REFRESH, body) for _ in range(5)))
    assert sorted(s for s, _ in results) == [200, 401, 401, 401, 401]


async def test_refresh_rejects_unknown_expired_and_bad(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    status, body = await client.call("POST", REFRESH, {"refreshToken": "not-a-token"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await client.call("POST", REFRESH, {}))[0] == 400
    assert (await client.call("POST", REFRESH, {"refreshToken": "x" * 300}))[0] == 400
    await db.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert (await client.call("POST", REFRESH, {"refreshToken": reg["tokens"]["refreshToken"]}))[0] == 401


async def test_refresh_token_lifetime_follows_setting(client: Client, db: asyncpg.Connection) -> None:
    await client.register()
    ttl = client.server.svc.settings.jwt_refresh_ttl
    secs = await db.fetchval("SELECT extract(epoch FROM expires_at - created_at) FROM refresh_tokens")
    assert float(secs) == ttl  # both columns take the statement's now(): no tolerance for a slow machine


async def test_logout_revokes_session_and_ends_its_sockets(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    tokens = reg["tokens"]
    other = (await _login(client, reg["user"]["phone"]))[1]["tokens"]
    sock = await client.connect("/customer", tokens["accessToken"])
    other_sock = await client.connect("/customer", other["accessToken"])
    revoked, gone = watch(sock, "/customer")
    other_revoked, _ = watch(other_sock, "/customer")

    status, body = await client.call("POST", LOGOUT, {"refreshToken": tokens["refreshToken"]})
    assert status == 204 and body is None
    assert await asyncio.wait_for(revoked, 5) == {"reason": "logout"}
    await asyncio.wait_for(gone, 5)
    assert (await client.call("POST", REFRESH, {"refreshToken": tokens["refreshToken"]}))[0] == 401
    assert (await client.call("POST", SETUP, token=tokens["accessToken"]))[0] == 401
    # The other session of the same user is untouched.
    assert other_sock.connected and not other_revoked.done()
    assert (await client.call("POST", SETUP, token=other["accessToken"]))[0] == 200
    # Idempotent: again, and with an unknown token.
    assert (await client.call("POST", LOGOUT, {"refreshToken": tokens["refreshToken"]}))[0] == 204
    assert (await client.call("POST", LOGOUT, {"refreshToken": "never-issued"}))[0] == 204
    assert (await client.call("POST", LOGOUT, {}))[0] == 400
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.logout'") >= 1


async def test_session_end_reaches_sockets_on_another_node(start_server: Any, client: Client) -> None:
    """A second node shares PostgreSQL and Redis; logout on node 1 ends the socket on node 2."""
    node2 = await start_server()
    reg = await client.register()
    import aiohttp

    async with aiohttp.ClientSession(base_url=node2.url) as session:
        c2 = Client(session, node2)
        try:
            sock = await c2.connect("/customer", reg["tokens"]["accessToken"])
            revoked, gone = watch(sock, "/customer")
            assert (await client.call("POST", LOGOUT, {"refreshToken": reg["tokens"]["refreshToken"]}))[0] == 204
            assert await asyncio.wait_for(revoked, 5) == {"reason": "logout"}
            await asyncio.wait_for(gone, 5)
        finally:
            await c2.close()


# ---------------------------------------------------------------- phone verification


async def _latest_code(db: asyncpg.Connection, phone: str) -> str:
    return await latest_code(db, phone, "verify_code")


async def test_phone_verification(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token, phone = reg["tokens"]["accessToken"], reg["user"]["phone"]
    confirm = "/api/v1/auth/verify/confirm"
    assert (await client.call("POST", confirm, {"code": "123456"}, token=token))[0] == 400  # nothing pending
    status, body = await client.call("POST", "/api/v1/auth/verify/request", token=token)
    assert status == 202 and body == {"expiresIn": 600}
    # Queued with the code (same transaction); the dispatcher hands it to the dev recorder.
    sql = "SELECT channel, status, outcome, kind, user_id::text AS uid FROM notifications_outbox"

    async def settled() -> bool:
        return (await db.fetchval("SELECT status FROM notifications_outbox")) != "pending"

    await eventually(settled, what="the code's text settled")
    row = await db.fetchrow(sql)
    assert dict(row) == {
        "channel": "sms",
        "status": "sent",
        "outcome": "recorded",
        "kind": "verify_code",
        "uid": reg["user"]["id"],
    }
    code = await _latest_code(db, phone)
    stored = await db.fetchval("SELECT code_hash FROM verification_codes")
    assert code not in stored
    wrong = "000000" if code != "000000" else "111111"
    status, body = await client.call("POST", confirm, {"code": wrong}, token=token)
    assert status == 400 and body["error"]["code"] == "invalid"
    assert (await client.call("POST", confirm, {}, token=token))[0] == 400
    assert (await client.call("POST", confirm, {"code": code}))[0] == 401
    status, body = await client.call("POST", confirm, {"code": code}, token=token)
    assert status == 200 and body == {"phoneVerified": True}
    assert await db.fetchval("SELECT phone_verified FROM users WHERE id = $1", uuid.UUID(reg["user"]["id"])) is True
    status, body = await _login(client, phone)
    assert body["user"]["phoneVerified"] is True
    assert (await client.call("POST", "/api/v1/auth/verify/request", token=token))[0] == 409
    assert (await client.call("POST", confirm, {"code": code}, token=token))[0] == 200  # idempotent


async def test_verification_attempts_are_limited(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token, phone = reg["tokens"]["accessToken"], reg["user"]["phone"]
    confirm = "/api/v1/auth/verify/confirm"
    assert (await client.call("POST", "/api/v1/auth/verify/request", token=token))[0] == 202
    code = await _latest_code(db, phone)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert (await client.call("POST", confirm, {"code": wrong}, token=token))[0] == 400
    status, body = await client.call("POST", confirm, {"code": code}, token=token)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert await db.fetchval("SELECT phone_verified FROM users WHERE id = $1", uuid.UUID(reg["user"]["id"])) is False
    old_id = await db.fetchval("SELECT id FROM verification_codes WHERE consumed_at IS NULL")
    # A new code starts over (and the old one is retired).
    assert (await client.call("POST", "/api/v1/auth/verify/request", token=token))[0] == 202
    new = await _latest_code(db, phone)
    assert await db.fetchval("SELECT consumed_at IS NOT NULL FROM verification_codes WHERE id = $1", old_id)
    if new != code:  # one draw in a million repeats the old code, which then is the new one
        assert (await client.call("POST", confirm, {"code": code}, token=token))[0] == 400
    assert (await client.call("POST", confirm, {"code": new}, token=token))[0] == 200


async def test_expired_verification_code(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token, phone = reg["tokens"]["accessToken"], reg["user"]["phone"]
    assert (await client.call("POST", "/api/v1/auth/verify/request", token=token))[0] == 202
    code = await _latest_code(db, phone)
    await db.execute("UPDATE verification_codes SET expires_at = now() - interval '1 second'")
    status, body = await client.call("POST", "/api/v1/auth/verify/confirm", {"code": code}, token=token)
    assert status == 400 and body["error"]["code"] == "expired"


async def test_verify_request_needs_bearer(client: Client) -> None:
    status, body = await client.call("POST", "/api/v1/auth/verify/request")
    assert status == 401 and body["error"]["code"] == "unauthorized"


# ---------------------------------------------------------------- bearer failures


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "role": "CUSTOMER",
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        **over,
    }


async def test_bearer_failures_are_401(client: Client) -> None:
    secret = client.server.svc.settings.jwt_secret
    now = int(time.time())
    unsigned = jwt.encode(_claims(), None, algorithm="none")  # type: ignore[arg-type]
    with warnings.catch_warnings():  # the server's secret is short for HS512: that is the point of the case
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        hs512 = jwt.encode(_claims(), secret, algorithm="HS512")
    cases = {
        "garbage": "not.a.jwt",
        "expired": jwt.encode(_claims(iat=now - 1000, exp=now - 10), secret, algorithm="HS256"),
        "forged": jwt.encode(_claims(), "another-secret-entirely-xxxxxxxx", algorithm="HS256"),
        "alg none": unsigned,
        "alg none, no dot": unsigned.rstrip("."),
        "HS512": hs512,
        "no sid": jwt.encode({k: v for k, v in _claims().items() if k != "sid"}, secret, algorithm="HS256"),
    }
    assert (await client.call("POST", SETUP))[0] == 401
    status, _ = await client.call("POST", SETUP, headers={"Authorization": "Basic abc"})
    assert status == 401
    for name, token in cases.items():
        status, body = await client.call("POST", SETUP, token=token)
        assert status == 401 and body["error"]["code"] == "unauthorized", name
