"""Shared by the notification tests (issue 10): the fake providers, a server whose settings point
at them, accounts with a registered device, rows queued with the producers' own statement, and
dispatchers built as a node builds its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from persistence import notifications as store
from persistence.db import RawJson
from pocho_rt import notify_service
from tests.conftest import Server, StartServer
from tests.fakes.fcm import FakeFcm
from tests.fakes.termii import FakeTermii
from tests.helpers import Client

DEVICES = "/api/v1/me/devices"


@asynccontextmanager
async def providers() -> AsyncIterator[tuple[FakeFcm, FakeTermii]]:
    fcm, termii = FakeFcm(), FakeTermii()
    await fcm.start()
    await termii.start()
    try:
        yield fcm, termii
    finally:
        await fcm.stop()
        await termii.stop()


def provider_settings(fcm: FakeFcm, termii: FakeTermii, **overrides: Any) -> dict[str, Any]:
    return {
        "fcm_service_account_json": fcm.service_account_json(),
        "fcm_base_url": fcm.url,
        "termii_api_key": termii.api_key,
        "termii_base_url": termii.url,
        "notify_poll_seconds": 0.05,
        "notify_backoff_base": 0.01,
        "notify_provider_timeout": 2.0,
        **overrides,
    }


async def start(start_server: StartServer, fcm: FakeFcm, termii: FakeTermii, **overrides: Any) -> Server:
    return await start_server(**provider_settings(fcm, termii, **overrides))


def device_token() -> str:
    """Shaped like an FCM registration token (the fake checks the shape)."""
    return f"d{uuid.uuid4().hex[:10]}:APA91b{uuid.uuid4().hex}"


async def with_device(client: Client, role: str = "CUSTOMER", *tokens: str) -> tuple[dict[str, Any], list[str]]:
    """A registered account with device tokens (one fresh one unless given)."""
    reg = await client.register(role)
    devices = list(tokens) or [device_token()]
    for token in devices:
        status, body = await client.call(
            "PUT", DEVICES, {"token": token, "platform": "ANDROID"}, token=reg["tokens"]["accessToken"]
        )
        assert status == 204, body
    return reg, devices


async def queue(
    db: asyncpg.Connection, user_id: str, kind: str, data: dict[str, Any], channel: str = "push", expires: Any = None
) -> int:
    """One outbox row written with the producers' statement; its id."""
    await db.execute(store.NOTIFY_USER.sql, user_id, channel, kind, user_id, RawJson(json.dumps(data)), expires)
    return int(await db.fetchval("SELECT max(id) FROM notifications_outbox"))


def dispatcher(server: Server, pool: asyncpg.Pool, **overrides: Any) -> notify_service.NotifyService:
    """A dispatcher as a node builds it (settings of `server` with `overrides`)."""
    settings = server.svc.settings.with_(**overrides)
    return notify_service.build(settings, pool, server.svc.pii, server.svc.sio)


async def row(db: asyncpg.Connection, row_id: int) -> dict[str, Any]:
    r = await db.fetchrow(
        "SELECT status, outcome, attempts, last_error, next_attempt_at FROM notifications_outbox WHERE id = $1", row_id
    )
    assert r is not None
    return dict(r)


async def make_due(db: asyncpg.Connection) -> None:
    """Bring retries forward instead of waiting out their backoff."""
    await db.execute("UPDATE notifications_outbox SET next_attempt_at = now() WHERE status = 'pending'")


def pushed(fcm: FakeFcm, row_id: int) -> list[dict[str, Any]]:
    return [m for m in fcm.delivered if m["data"].get("notificationId") == str(row_id)]
