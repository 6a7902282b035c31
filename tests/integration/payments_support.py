"""Shared by the payment tests: fake providers on local ports, a server pointed at them, signed
webhook deliveries, and an order negotiated through real sockets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from tests.conftest import Server, StartServer
from tests.e2e.util import Party, accepted_order, customer, vendor
from tests.fakes.flutterwave import FakeFlutterwave
from tests.fakes.local import running
from tests.fakes.paystack import FakePaystack
from tests.helpers import Client, eventually

# The shared vectors (../shared/fixtures/webhook-vectors.json), copied into tests/fixtures.
VECTORS: dict[str, Any] = json.loads((Path(__file__).parent.parent / "fixtures" / "webhook-vectors.json").read_text())
PAYSTACK_KEY: str = VECTORS["paystack"]["key"]
FLW_HASH: str = VECTORS["flutterwave_v3"]["secret_hash"]


@pytest.fixture
async def paystack() -> AsyncIterator[FakePaystack]:
    async with running(FakePaystack(PAYSTACK_KEY)) as fake:
        yield fake


@pytest.fixture
async def flutterwave() -> AsyncIterator[FakeFlutterwave]:
    async with running(FakeFlutterwave()) as fake:
        yield fake


def provider_settings(paystack: FakePaystack, flutterwave: FakeFlutterwave, **overrides: Any) -> dict[str, Any]:
    return {
        "paystack_secret_key": paystack.secret_key,
        "paystack_base_url": paystack.url,
        "flutterwave_secret_key": flutterwave.secret_key,
        "flutterwave_base_url": flutterwave.url,
        "flutterwave_secret_hash": FLW_HASH,
        "flutterwave_signature_v4": True,
        "payment_reconcile_seconds": 3600.0,  # tests that want the reconcile job shorten it
        "payment_provider_timeout": 5.0,
        **overrides,
    }


@pytest.fixture
async def pay_server(start_server: StartServer, paystack: FakePaystack, flutterwave: FakeFlutterwave) -> Server:
    return await start_server(**provider_settings(paystack, flutterwave))


@pytest.fixture
async def pc(pay_server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(base_url=pay_server.url) as session:
        c = Client(session, pay_server)
        try:
            yield c
        finally:
            await c.close()


def paystack_headers(raw: bytes, key: str = PAYSTACK_KEY) -> dict[str, str]:
    sig = hmac.new(key.encode(), raw, hashlib.sha512).hexdigest()
    return {"x-paystack-signature": sig, "Content-Type": "application/json"}


def flw_v4_headers(raw: bytes, secret_hash: str = FLW_HASH) -> dict[str, str]:
    sig = base64.b64encode(hmac.new(secret_hash.encode(), raw, hashlib.sha256).digest()).decode()
    return {"flutterwave-signature": sig, "Content-Type": "application/json"}


async def post_raw(c: Client, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    async with c.session.post(path, data=raw, headers=headers) as resp:
        body = await resp.json(content_type=None)
        return resp.status, body, dict(resp.headers)


async def paystack_webhook(c: Client, event: dict[str, Any]) -> tuple[int, Any]:
    raw = orjson.dumps(event)
    status, body, _ = await post_raw(c, "/webhooks/paystack", raw, paystack_headers(raw))
    return status, body


async def flutterwave_webhook(c: Client, event: dict[str, Any]) -> tuple[int, Any]:
    raw = orjson.dumps(event)
    status, body, _ = await post_raw(c, "/webhooks/flutterwave", raw, {"verif-hash": FLW_HASH})
    return status, body


async def ordered(c: Client, db: asyncpg.Connection) -> tuple[Party, Party, dict[str, Any]]:
    """A customer and vendor on real sockets and their PENDING_PAYMENT order (300,000 kobo)."""
    cust = await customer(c)
    vend = await vendor(c, db)
    order = await accepted_order(cust, vend)
    return cust, vend, order


async def init(c: Client, cust: Party, order_id: str, provider: str = "PAYSTACK") -> dict[str, Any]:
    status, body = await c.call(
        "POST", "/api/v1/payments/init", {"orderId": order_id, "provider": provider}, token=cust.token
    )
    assert status == 200, body
    return dict(body)


async def payment_row(db: asyncpg.Connection, reference: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM payments WHERE reference = $1", reference)
    assert row is not None
    return row


async def payment_status_is(db: asyncpg.Connection, reference: str, status: str) -> None:
    async def check() -> bool:
        return bool(await db.fetchval("SELECT status FROM payments WHERE reference = $1", reference) == status)

    await eventually(check, what=f"payment {reference} {status}")


async def order_status(c: Client, cust: Party, order_id: str) -> dict[str, Any]:
    status, body = await c.call("GET", f"/api/v1/orders/{order_id}", token=cust.token)
    assert status == 200, body
    return dict(body["order"])


async def audit_trail(db: asyncpg.Connection, payment_id: Any) -> list[tuple[str | None, str]]:
    rows = await db.fetch(
        "SELECT details FROM audit_log WHERE action = 'payment.status' AND target_id = $1 ORDER BY id", str(payment_id)
    )
    return [(js(r["details"])["from"], js(r["details"])["to"]) for r in rows]


def js(value: Any) -> Any:
    """A json/jsonb column read by the tests' plain asyncpg connection (text)."""
    return json.loads(value) if isinstance(value, str) else value


def sample(name: str, labels: dict[str, str]) -> float:
    from engine.runtime.metrics import REGISTRY

    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def uid() -> str:
    return str(uuid.uuid4())


Check = Callable[[], Any]
