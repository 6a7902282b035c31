"""Device tokens and quiet hours over HTTP (issue 10): validation with nothing changed, the
per-user device limit, a token moving between accounts, removal on logout and erasure; the
production refusal of the development SMS recorder."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from pocho_rt.config import ConfigError, load_settings
from tests.conftest import Server, StartServer
from tests.helpers import PASSWORD, Client
from tests.notify_support import DEVICES, device_token

SETTINGS = "/api/v1/me/notifications"


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server(notify_max_devices=2)


async def _tokens(db: asyncpg.Connection, user_id: str) -> list[str]:
    rows = await db.fetch("SELECT token FROM device_tokens WHERE user_id = $1::uuid ORDER BY token", user_id)
    return [r["token"] for r in rows]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"platform": "ANDROID"}, "token"),
        ({"token": device_token()}, "platform"),
        ({"token": device_token(), "platform": "BLACKBERRY"}, "platform"),
        ({"token": "short:tok", "platform": "IOS"}, "token"),
        ({"token": "has spaces in it, which no token has", "platform": "IOS"}, "token"),
        ({"token": "x" * 4097, "platform": "WEB"}, "token"),
        ({"token": 12345678901234567890, "platform": "WEB"}, "token"),
    ],
)
async def test_device_registration_is_validated(
    client: Client, db: asyncpg.Connection, payload: dict[str, Any], field: str
) -> None:
    reg = await client.register()
    status, body = await client.call("PUT", DEVICES, payload, token=reg["tokens"]["accessToken"])
    assert status == 400 and body["error"]["code"] == "invalid"
    assert field in body["error"]["details"], body
    assert await _tokens(db, reg["user"]["id"]) == []


async def test_devices_are_limited_per_user_move_between_accounts_and_go_with_logout(
    client: Client, db: asyncpg.Connection
) -> None:
    assert (await client.call("PUT", DEVICES, {"token": device_token(), "platform": "IOS"}))[0] == 401
    reg = await client.register()
    uid, access = reg["user"]["id"], reg["tokens"]["accessToken"]
    first, second, third = sorted(device_token() for _ in range(3))
    for token in (first, second, first):  # registering the same token again is no new device
        assert (await client.call("PUT", DEVICES, {"token": token, "platform": "ANDROID"}, token=access))[0] == 204
    status, body = await client.call("PUT", DEVICES, {"token": third, "platform": "ANDROID"}, token=access)
    assert status == 409 and body["error"]["code"] == "limit_reached"
    assert await _tokens(db, uid) == [first, second]
    status, body = await client.call("GET", DEVICES, token=access)
    assert status == 200 and sorted(d["tokenSuffix"] for d in body["devices"]) == sorted([first[-6:], second[-6:]])

    other = await client.register()  # the phone changes hands: the token follows the new account
    assert (
        await client.call("PUT", DEVICES, {"token": second, "platform": "IOS"}, token=other["tokens"]["accessToken"])
    )[0] == 204
    assert await _tokens(db, uid) == [first]
    assert await _tokens(db, other["user"]["id"]) == [second]

    status, _ = await client.call("DELETE", DEVICES, {"token": second}, token=access)  # not theirs any more
    assert status == 404
    status, _ = await client.call("POST", "/api/v1/auth/logout", {"refreshToken": reg["tokens"]["refreshToken"]})
    assert status == 204
    assert await _tokens(db, uid) == []  # the session that registered it logged out
    assert await _tokens(db, other["user"]["id"]) == [second]
    status, _ = await client.call("DELETE", DEVICES, {"token": second}, token=other["tokens"]["accessToken"])
    assert status == 204 and await _tokens(db, other["user"]["id"]) == []


async def test_erasure_deletes_devices_and_quiet_hours(client: Client, db: asyncpg.Connection) -> None:
    reg = await client.register()
    access = reg["tokens"]["accessToken"]
    assert (await client.call("PUT", DEVICES, {"token": device_token(), "platform": "WEB"}, token=access))[0] == 204
    quiet = {"quietHours": {"start": "22:00", "end": "07:00"}}
    assert (await client.call("PUT", SETTINGS, quiet, token=access))[0] == 200
    assert (await client.call("DELETE", "/api/v1/me", {"password": PASSWORD}, token=access))[0] == 204
    uid = reg["user"]["id"]
    assert await _tokens(db, uid) == []
    assert await db.fetchval("SELECT count(*) FROM notification_settings WHERE user_id = $1::uuid", uid) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"quietHours": {"start": "24:00", "end": "07:00"}}, "quietHours.start"),
        ({"quietHours": {"start": "22:00", "end": "7:00"}}, "quietHours.end"),
        ({"quietHours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}, "quietHours.timezone"),
        ({"quietHours": {"start": "22:00", "end": "22:00"}}, "quietHours.end"),
        ({}, "quietHours"),
    ],
)
async def test_quiet_hours_are_validated(client: Client, payload: dict[str, Any], field: str) -> None:
    reg = await client.register()
    access = reg["tokens"]["accessToken"]
    status, body = await client.call("PUT", SETTINGS, payload, token=access)
    assert status == 400 and field in body["error"]["details"], body
    assert (await client.call("GET", SETTINGS, token=access))[1] == {"quietHours": None}


async def test_quiet_hours_round_trip_and_clear(client: Client) -> None:
    access = (await client.register())["tokens"]["accessToken"]
    quiet = {"start": "22:30", "end": "06:45", "timezone": "Africa/Lagos"}
    assert await client.call("PUT", SETTINGS, {"quietHours": quiet}, token=access) == (200, {"quietHours": quiet})
    assert await client.call("GET", SETTINGS, token=access) == (200, {"quietHours": quiet})
    assert await client.call("PUT", SETTINGS, {"quietHours": None}, token=access) == (200, {"quietHours": None})


def test_production_refuses_the_development_sms_recorder() -> None:
    prod = {
        "POCHO_ENV": "production",
        "JWT_SECRET": "x" * 40,
        "POCHO_ADMIN_KEY": "k" * 20,
        "POCHO_PII_KEY": "k1:" + "A" * 43,
        "POCHO_PII_INDEX_KEY": "B" * 43,
    }
    with pytest.raises(ConfigError, match="TERMII_API_KEY must be set when POCHO_ENV=production"):
        load_settings(prod)
    assert load_settings({**prod, "TERMII_API_KEY": "live-key"}).termii_api_key == "live-key"
    assert load_settings({}).termii_api_key == ""  # development: the recorder is fine
    with pytest.raises(ConfigError, match="FCM_SERVICE_ACCOUNT_JSON: FCM service account lacks private_key"):
        load_settings({"FCM_SERVICE_ACCOUNT_JSON": '{"project_id": "p", "client_email": "e"}'})
    with pytest.raises(ConfigError, match="TERMII_CHANNEL"):
        load_settings({"TERMII_CHANNEL": "whatsapp"})
