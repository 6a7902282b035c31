"""The provider clients against the local servers' failure answers, the reconcile job finding
what no webhook delivered, and storage outages on the webhook route (503, nothing lost: the
retried delivery applies)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import orjson
import pytest

from adapters.flutterwave import FlutterwaveClient
from adapters.paystack import PaystackClient
from engine import payments as pay
from engine.ports import CheckoutRequest, ProviderError
from tests.conftest import Server, StartServer
from tests.fakes.flutterwave import FakeFlutterwave
from tests.fakes.paystack import FakePaystack
from tests.helpers import Client
from tests.integration.payments_support import (
    init,
    order_status,
    ordered,
    payment_status_is,
    paystack_headers,
    post_raw,
    provider_settings,
    sample,
)
from tests.proxy import TcpProxy, via_proxy

CHECKOUT = CheckoutRequest("pocho-test-1", 300_050, "ada@example.com", "Ada Obi", "order-1")


async def test_paystack_client_against_documented_answers(paystack: FakePaystack) -> None:
    client = PaystackClient(paystack.url, paystack.secret_key, 5.0)
    try:
        url = await client.initialize(CHECKOUT)
        assert url.startswith("https://checkout.paystack.com/")
        assert (await client.verify("pocho-test-1", None)).outcome == pay.V_PENDING  # abandoned: not paid yet
        paystack.settle("pocho-test-1")
        ok = await client.verify("pocho-test-1", None)
        assert (ok.outcome, ok.amount_kobo, ok.currency, ok.reference) == (
            pay.V_SUCCESS,
            300_050,
            "NGN",
            "pocho-test-1",
        )
        paystack.settle("pocho-test-1", status="failed")
        assert (await client.verify("pocho-test-1", None)).outcome == pay.V_FAILED
        assert (await client.verify("nobody-knows", None)).outcome == pay.V_NOT_FOUND
        with pytest.raises(ProviderError) as dup:
            await client.initialize(CHECKOUT)  # Paystack refuses a reference twice
        assert dup.value.kind == "rejected"
        with pytest.raises(ProviderError) as unknown:
            await client.resolve_account("058", "9999999999")
        assert unknown.value.kind == "not_found"
    finally:
        await client.close()
    wrong = PaystackClient(paystack.url, "sk_test_wrong", 5.0)
    try:
        with pytest.raises(ProviderError) as bad_key:
            await wrong.verify("pocho-test-1", None)
        assert bad_key.value.kind == "invalid_key"
    finally:
        await wrong.close()
    paystack.down = True
    down = PaystackClient(paystack.url, paystack.secret_key, 5.0)
    try:
        with pytest.raises(ProviderError) as unavailable:
            await down.verify("pocho-test-1", None)
        assert unavailable.value.kind == "unavailable"
    finally:
        await down.close()


async def test_flutterwave_client_against_documented_answers(flutterwave: FakeFlutterwave) -> None:
    client = FlutterwaveClient(flutterwave.url, flutterwave.secret_key, 5.0, "https://pocho.example/paid")
    try:
        link = await client.initialize(CHECKOUT)
        assert link.startswith("https://checkout.flutterwave.com/")
        assert flutterwave.checkouts["pocho-test-1"]["amount"] == 3000.5  # naira with kobo as decimals
        assert flutterwave.checkouts["pocho-test-1"]["redirect_url"] == "https://pocho.example/paid"
        assert (await client.verify("pocho-test-1", None)).outcome == pay.V_NOT_FOUND  # nobody paid
        tx = flutterwave.settle("pocho-test-1", amount="3000.50")
        by_ref = await client.verify("pocho-test-1", None)
        by_id = await client.verify("pocho-test-1", str(tx["id"]))
        assert by_ref == by_id
        assert (by_id.outcome, by_id.amount_kobo, by_id.tx_id) == (pay.V_SUCCESS, 300_050, str(tx["id"]))
        flutterwave.settle("pocho-test-1", status="failed")
        assert (await client.verify("pocho-test-1", str(tx["id"]))).outcome == pay.V_FAILED
        assert (await client.verify("x", "1")).outcome == pay.V_NOT_FOUND
        with pytest.raises(ProviderError) as unknown:
            await client.resolve_account("044", "1234567890")
        assert unknown.value.kind == "not_found"
    finally:
        await client.close()
    wrong = FlutterwaveClient(flutterwave.url, "FLWSECK_TEST-wrong", 5.0, "")
    try:
        with pytest.raises(ProviderError) as bad_key:
            await wrong.initialize(CHECKOUT)
        assert bad_key.value.kind == "invalid_key"
    finally:
        await wrong.close()


async def test_init_failures_leave_no_live_payment(
    start_server: StartServer, paystack: FakePaystack, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    server = await start_server(**provider_settings(paystack, flutterwave, paystack_secret_key="sk_test_wrong"))
    async with aiohttp.ClientSession(base_url=server.url) as session:
        c = Client(session, server)
        cust, _, order = await ordered(c, db)
        body = {"orderId": order["id"], "provider": "PAYSTACK"}
        status, err = await c.call("POST", "/api/v1/payments/init", body, token=cust.token)
        assert status == 502 and err["error"]["code"] == "provider_error"
        assert [r["status"] for r in await db.fetch("SELECT status FROM payments")] == ["FAILED"]
        flutterwave.down = True
        status, err = await c.call(
            "POST", "/api/v1/payments/init", {**body, "provider": "FLUTTERWAVE"}, token=cust.token
        )
        assert status == 503 and err["error"]["code"] == "unavailable"
        flutterwave.down = False
        answer = await init(c, cust, order["id"], "FLUTTERWAVE")  # a fresh payment, not the failed one
        rows = await db.fetch("SELECT reference, status FROM payments ORDER BY created_at")
        assert [r["status"] for r in rows] == ["FAILED", "FAILED", "INITIATED"]
        assert rows[-1]["reference"] == answer["reference"]
        await c.close()


async def test_lost_webhook_is_found_by_the_reconcile_job(
    start_server: StartServer, paystack: FakePaystack, flutterwave: FakeFlutterwave, db: asyncpg.Connection
) -> None:
    settings = provider_settings(
        paystack, flutterwave, payment_reconcile_seconds=0.1, payment_reverify_after_seconds=0.0
    )
    server = await start_server(**settings)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        c = Client(session, server)
        cust, _, order = await ordered(c, db)
        seen = cust.next("order:status")
        ref = (await init(c, cust, order["id"], "FLUTTERWAVE"))["reference"]
        flutterwave.settle(ref)  # paid; the webhook never comes
        event = await seen
        assert event["order"]["status"] == "CONFIRMED" and event["event"]["reference"] == ref
        await payment_status_is(db, ref, "SUCCESS")
        assert flutterwave.calls("GET", "/v3/transactions/verify_by_reference")
        assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0
        source = await db.fetchval(
            "SELECT details->>'source' FROM audit_log WHERE details->>'to' = 'SUCCESS' AND target_kind = 'payment'"
        )
        assert source == "reconcile"
        await c.close()


@pytest.fixture
async def proxied_server(
    database_url: str,
    proxy: TcpProxy,  # before start_server: set up first, torn down after the node stopped
    start_server: StartServer,
    paystack: FakePaystack,
    flutterwave: FakeFlutterwave,
) -> AsyncIterator[Server]:
    """A node whose PostgreSQL connections go through a proxy the test can cut."""
    settings = provider_settings(paystack, flutterwave)
    server = await start_server(via_db=via_proxy(database_url, proxy.port), **settings)
    try:
        yield server
    finally:
        proxy.restore()  # the node stops (start_server's teardown) with storage reachable


async def test_storage_outage_answers_503_then_the_retry_applies(
    proxied_server: Server, proxy: TcpProxy, paystack: FakePaystack, db: asyncpg.Connection
) -> None:
    async with aiohttp.ClientSession(base_url=proxied_server.url) as session:
        c = Client(session, proxied_server)
        cust, _, order = await ordered(c, db)
        ref = (await init(c, cust, order["id"]))["reference"]
        paystack.settle(ref)
        raw = orjson.dumps(paystack.charge_event(ref))
        outage = sample("pocho_payment_webhooks_total", {"provider": "PAYSTACK", "outcome": "unavailable"})
        proxy.cut()
        status, err, headers = await post_raw(c, "/webhooks/paystack", raw, paystack_headers(raw))
        assert status == 503 and err["error"]["code"] == "unavailable" and headers["Retry-After"] == "2"
        assert sample("pocho_payment_webhooks_total", {"provider": "PAYSTACK", "outcome": "unavailable"}) == outage + 1
        assert await db.fetchval("SELECT count(*) FROM webhook_events") == 0
        proxy.restore()
        seen = cust.next("order:status")
        status, body, _ = await post_raw(c, "/webhooks/paystack", raw, paystack_headers(raw))  # the provider retries
        assert status == 200 and body == {"received": True, "duplicate": False}
        event = await seen
        assert event["order"]["status"] == "CONFIRMED" and event["event"]["reference"] == ref
        await payment_status_is(db, ref, "SUCCESS")
        assert (await order_status(c, cust, order["id"]))["paymentStatus"] == "PAID"
        await c.close()
