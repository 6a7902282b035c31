"""Shared by the users tests (issue 15): texts read from the dev SMS outbox, socket watchers,
session ids of tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import jwt
import socketio

from persistence.pii import RECIPIENT, PiiCodec
from pocho_rt.config import DEV_PII_INDEX_KEY, DEV_PII_KEY
from tests.helpers import PASSWORD, Client

ME = "/api/v1/me"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
RESET_REQUEST = "/api/v1/auth/password-reset/request"
RESET_CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW_PASSWORD = "a-brand-new-passphrase"


def sid_of(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["sid"])


async def login(client: Client, phone: str, password: str = PASSWORD) -> tuple[int, Any]:
    return await client.call("POST", LOGIN, {"phone": phone, "password": password})


DEV_PII = PiiCodec.build(DEV_PII_KEY, "", DEV_PII_INDEX_KEY)  # the test servers' keys


async def texts(db: asyncpg.Connection, phone: str, kind: str | None = None) -> list[str]:
    """Bodies of the texts (of `kind`, or all) sent to `phone`, oldest first (the dev SMS
    sender's outbox; the recipient is stored sealed)."""
    rows = await db.fetch(
        """SELECT recipient, body FROM notifications_outbox
            WHERE channel = 'sms' AND kind = coalesce($1, kind) ORDER BY id""",
        kind,
    )
    return [r["body"] for r in rows if DEV_PII.open(RECIPIENT, r["recipient"]) == phone]


async def latest_code(db: asyncpg.Connection, phone: str, kind: str) -> str:
    sent = await texts(db, phone, kind)
    assert sent, f"no {kind} text to {phone}"
    return next(w for w in sent[-1].replace(".", " ").split() if w.isdigit() and len(w) == 6)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def watch(sock: socketio.AsyncClient, namespace: str) -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
    """Futures resolved by `session:revoked` and by the disconnect of `sock`."""
    loop = asyncio.get_running_loop()
    revoked: asyncio.Future[Any] = loop.create_future()
    gone: asyncio.Future[Any] = loop.create_future()

    def on_revoked(data: Any) -> None:
        if not revoked.done():
            revoked.set_result(data)

    def on_disconnect(*_: Any) -> None:
        if not gone.done():
            gone.set_result(True)

    sock.on("session:revoked", on_revoked, namespace=namespace)
    sock.on("disconnect", on_disconnect, namespace=namespace)
    return revoked, gone
