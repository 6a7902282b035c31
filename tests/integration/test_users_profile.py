"""GET/PATCH /api/v1/me and the phone change by code (issue 15), over real HTTP against
PostgreSQL and Redis: what changes, what is refused with PROTOCOL errors, and that a refused
change leaves the account as it was."""

from __future__ import annotations

import asyncpg
import pytest

from tests.helpers import Client, new_phone
from tests.integration.users_support import ME, latest_code, login, other_code, texts

PHONE = "/api/v1/me/phone"
PHONE_CONFIRM = "/api/v1/me/phone/confirm"


async def test_get_and_patch_profile(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register(email="ada@example.com")
    token = reg["tokens"]["accessToken"]
    status, me = await client.call("GET", ME, token=token)
    assert status == 200
    assert me["id"] == reg["user"]["id"] and me["phone"] == reg["user"]["phone"]
    assert (me["email"], me["locale"], me["avatarUrl"]) == ("ada@example.com", None, None)

    change = {
        "firstName": "  Adaeze ",
        "lastName": "Okafor",
        "email": "adaeze@example.com",
        "locale": "en-NG",
        "avatarUrl": "https://cdn.example.com/a.png",
    }
    status, me = await client.call("PATCH", ME, change, token=token)
    assert status == 200, me
    assert (me["firstName"], me["lastName"], me["email"], me["locale"], me["avatarUrl"]) == (
        "Adaeze",
        "Okafor",
        "adaeze@example.com",
        "en-NG",
        "https://cdn.example.com/a.png",
    )
    assert (await client.call("GET", ME, token=token))[1] == me
    # null clears the optional fields; absent fields stay.
    status, me = await client.call("PATCH", ME, {"email": None, "avatarUrl": None}, token=token)
    assert status == 200 and me["email"] is None and me["avatarUrl"] is None and me["locale"] == "en-NG"
    audit = await db.fetch("SELECT details FROM audit_log WHERE action = 'user.profile_updated' ORDER BY id")
    assert [a["details"] for a in audit] == [
        '{"fields": ["avatar_url", "email", "first_name", "last_name", "locale"]}',
        '{"fields": ["avatar_url", "email"]}',
    ]  # which fields changed, never their values


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"firstName": "   "}, "firstName"),
        ({"lastName": ""}, "lastName"),
        ({"email": "not-an-email"}, "email"),
        ({"locale": "english please"}, "locale"),
        ({"avatarUrl": "http://insecure.example.com/a.png"}, "avatarUrl"),
        ({"avatarUrl": "https://x/" + "a" * 2100}, "avatarUrl"),
        ({"firstName": 7}, "firstName"),
        ({"phone": "+2348000000000"}, "phone"),
        ({}, "body"),
    ],
)
async def test_patch_refuses_bad_input_and_changes_nothing(
    client: Client, db: asyncpg.Connection, body: dict[str, object], field: str
) -> None:
    reg = await client.register()
    token = reg["tokens"]["accessToken"]
    before = await client.call("GET", ME, token=token)
    status, err = await client.call("PATCH", ME, body, token=token)
    assert status == 400 and err["error"]["code"] == "invalid" and field in err["error"]["details"], err
    assert await client.call("GET", ME, token=token) == before


async def test_me_needs_a_live_token(client: Client) -> None:
    assert (await client.call("GET", ME))[0] == 401
    assert (await client.call("PATCH", ME, {"firstName": "X"}, token="forged"))[0] == 401
    reg = await client.register()
    assert (await client.call("POST", "/api/v1/auth/logout", {"refreshToken": reg["tokens"]["refreshToken"]}))[0] == 204
    status, body = await client.call("GET", ME, token=reg["tokens"]["accessToken"])
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_phone_change_by_code_to_the_new_number(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token, old = reg["tokens"]["accessToken"], reg["user"]["phone"]
    new = new_phone()
    status, body = await client.call("POST", PHONE, {"phone": new}, token=token)
    assert status == 202 and body == {"expiresIn": 600}
    assert await texts(db, old, "phone_change") == []  # the code goes to the new number only
    code = await latest_code(db, new, "phone_change")

    status, err = await client.call("POST", PHONE_CONFIRM, {"code": other_code(code)}, token=token)
    assert status == 400 and err["error"]["details"] == {"code": "wrong code"}
    assert (await client.call("GET", ME, token=token))[1]["phone"] == old

    status, me = await client.call("POST", PHONE_CONFIRM, {"code": code}, token=token)
    assert status == 200 and me["phone"] == new and me["phoneVerified"] is True
    # The code is single use; the account logs in with the new number only.
    status, err = await client.call("POST", PHONE_CONFIRM, {"code": code}, token=token)
    assert status == 400 and err["error"]["details"] == {"code": "no pending code"}
    assert (await login(client, new))[0] == 200
    assert (await login(client, old))[0] == 401
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'user.phone_changed'") == 1


async def test_phone_change_failures(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    other = await client.register()
    token = reg["tokens"]["accessToken"]
    status, err = await client.call("POST", PHONE, {"phone": other["user"]["phone"]}, token=token)
    assert status == 409 and err["error"]["code"] == "conflict"
    status, err = await client.call("POST", PHONE, {"phone": reg["user"]["phone"]}, token=token)
    assert status == 400 and err["error"]["details"] == {"phone": "unchanged"}
    assert (await client.call("POST", PHONE, {"phone": "0803"}, token=token))[0] == 400
    status, err = await client.call("POST", PHONE_CONFIRM, {"code": "123456"}, token=token)
    assert status == 400 and err["error"]["details"] == {"code": "no pending code"}

    # Expired: the right code no longer works.
    new = new_phone()
    assert (await client.call("POST", PHONE, {"phone": new}, token=token))[0] == 202
    code = await latest_code(db, new, "phone_change")
    await db.execute("UPDATE account_codes SET expires_at = now() - interval '1 second'")
    assert (await client.call("POST", PHONE_CONFIRM, {"code": code}, token=token))[0] == 400

    # The number was taken between the request and the confirmation.
    new = new_phone()
    assert (await client.call("POST", PHONE, {"phone": new}, token=token))[0] == 202
    code = await latest_code(db, new, "phone_change")
    await client.register(phone=new)
    status, err = await client.call("POST", PHONE_CONFIRM, {"code": code}, token=token)
    assert status == 409 and err["error"]["code"] == "conflict"
    assert (await client.call("GET", ME, token=token))[1]["phone"] == reg["user"]["phone"]

    # Three texts per 10 minutes per user (refused requests sent none and do not count), then 429.
    assert (await client.call("POST", PHONE, {"phone": new_phone()}, token=token))[0] == 202
    async with client.session.post(
        PHONE, json={"phone": new_phone()}, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limited"
        assert 0 < int(r.headers["Retry-After"]) <= 600


async def test_five_wrong_phone_codes_burn_it(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    token = reg["tokens"]["accessToken"]
    new = new_phone()
    assert (await client.call("POST", PHONE, {"phone": new}, token=token))[0] == 202
    code = await latest_code(db, new, "phone_change")
    for _ in range(5):
        status, err = await client.call("POST", PHONE_CONFIRM, {"code": other_code(code)}, token=token)
        assert status == 400 and err["error"]["details"] == {"code": "wrong code"}
    status, err = await client.call("POST", PHONE_CONFIRM, {"code": code}, token=token)
    assert status == 400 and err["error"]["details"] == {"code": "no pending code"}
    assert (await client.call("GET", ME, token=token))[1]["phone"] == reg["user"]["phone"]
