"""The Termii and FCM adapters against local servers speaking the providers' documented shapes:
what is sent, and how every kind of answer is classified (sent, retryable, permanent, token
gone), timeouts and refused connections included; the FCM OAuth token cached, refreshed when
its life runs out (a test clock, no waiting) and fetched again once after a 401."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.delivery import PERMANENT, RETRYABLE, TOKEN_GONE, DeliveryError
from adapters.fcm import FcmPush, ServiceAccount
from adapters.termii import TermiiSms
from engine.ports import PushSender, SmsSender
from tests.fakes.fcm import FakeFcm
from tests.fakes.local import running
from tests.fakes.termii import FakeTermii

DEVICE = "fT0k3n:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
PHONE = "+2348012345678"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def termii() -> AsyncIterator[FakeTermii]:
    async with running(FakeTermii()) as fake:
        yield fake


@pytest.fixture
async def fcm() -> AsyncIterator[FakeFcm]:
    async with running(FakeFcm()) as fake:
        yield fake


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _sms_error(client: TermiiSms, phone: str = PHONE) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await client.send_sms(phone, "Your Pocho code is 123456")
    return info.value


async def _push_error(client: FcmPush, device: str = DEVICE, data: dict[str, object] | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await client.send(device, "t", "b", data or {})  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------- Termii


async def test_termii_sends_the_documented_body(termii: FakeTermii) -> None:
    client = TermiiSms(termii.url, termii.api_key, "Pocho")
    try:
        sender: SmsSender = client
        message_id = await client.send_sms(PHONE, "Your Pocho code is 123456")
        await sender.send(PHONE, "Order confirmed", user_id=None, kind="order.confirmed")
        await client.send_sms(PHONE, "promo", channel="generic")
    finally:
        await client.close()
    assert termii.sent[0]["message_id"] == message_id
    first = termii.sent[0]
    assert {k: first[k] for k in ("api_key", "to", "from", "sms", "type", "channel")} == {
        "api_key": termii.api_key,
        "to": "2348012345678",
        "from": "Pocho",
        "sms": "Your Pocho code is 123456",
        "type": "plain",
        "channel": "dnd",
    }
    assert [m["sms"] for m in termii.sent] == ["Your Pocho code is 123456", "Order confirmed", "promo"]
    assert [m["channel"] for m in termii.sent] == ["dnd", "dnd", "generic"]
    assert termii.balance == 97


async def test_termii_refusals_are_permanent(termii: FakeTermii) -> None:
    client = TermiiSms(termii.url, termii.api_key, "Pocho")
    wrong_key = TermiiSms(termii.url, "not-the-key", "Pocho")
    unknown_sender = TermiiSms(termii.url, termii.api_key, "Stranger")
    try:
        bad_number = await _sms_error(client, "+234-80")
        assert (bad_number.kind, "Invalid phone number" in bad_number.message) == (PERMANENT, True)
        assert (await _sms_error(wrong_key)).kind == PERMANENT
        assert (await _sms_error(unknown_sender)).kind == PERMANENT
        termii.balance = 0
        broke = await _sms_error(client)
        assert (broke.kind, "Insufficient balance" in broke.message) == (PERMANENT, True)
    finally:
        for c in (client, wrong_key, unknown_sender):
            await c.close()
    assert termii.sent == []


async def test_termii_provider_trouble_is_retryable(termii: FakeTermii) -> None:
    client = TermiiSms(termii.url, termii.api_key, "Pocho")
    try:
        termii.fail_next = [500, 503, 429]
        kinds = [(await _sms_error(client)).kind for _ in range(3)]
        assert kinds == [RETRYABLE, RETRYABLE, RETRYABLE]
        assert await client.send_sms(PHONE, "after the storm")  # the provider is back
    finally:
        await client.close()
    assert [m["sms"] for m in termii.sent] == ["after the storm"]


async def test_termii_timeout_and_refused_connection_are_retryable(termii: FakeTermii) -> None:
    termii.hang = asyncio.Event()
    slow = TermiiSms(termii.url, termii.api_key, "Pocho", timeout=0.2)
    gone = TermiiSms(_closed_port_url(), termii.api_key, "Pocho")
    try:
        timed_out = await _sms_error(slow)
        assert (timed_out.kind, "Timeout" in timed_out.message) == (RETRYABLE, True)
        assert (await _sms_error(gone)).kind == RETRYABLE
    finally:
        termii.hang.set()
        await slow.close()
        await gone.close()


def test_termii_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="channel"):
        TermiiSms("http://x", "k", "Pocho", channel="whatsapp")
    with pytest.raises(ValueError, match="sender id"):
        TermiiSms("http://x", "k", "PochoMarketplace")


# ---------------------------------------------------------------- FCM


def _fcm_client(fake: FakeFcm, clock: _Clock | None = None, timeout: float = 5.0) -> FcmPush:
    account = ServiceAccount.from_json(fake.service_account_json())
    if clock is None:
        return FcmPush(account, base_url=fake.url, timeout=timeout)
    return FcmPush(account, base_url=fake.url, timeout=timeout, clock=clock)


async def test_fcm_sends_the_documented_message_with_one_cached_token(fcm: FakeFcm) -> None:
    client = _fcm_client(fcm)
    try:
        pusher: PushSender = client
        name = await pusher.send(DEVICE, "New offer", "Mama Put offers jollof for 2500", {"requestId": "r1"})
        await client.send(DEVICE, "Counter", "1800?", {"requestId": "r1"})
    finally:
        await client.close()
    assert name.startswith(f"projects/{fcm.project_id}/messages/")
    assert fcm.delivered[0] == {
        "name": name,
        "token": DEVICE,
        "notification": {"title": "New offer", "body": "Mama Put offers jollof for 2500"},
        "data": {"requestId": "r1"},
    }
    assert len(fcm.delivered) == 2
    assert (fcm.tokens_issued, client.token_fetches) == (1, 1)


async def test_fcm_token_refreshed_shortly_before_it_expires(fcm: FakeFcm) -> None:
    fcm.expires_in = 120  # short-lived tokens: refreshed at 120 - 12 seconds
    clock = _Clock()
    client = _fcm_client(fcm, clock)
    try:
        await client.send(DEVICE, "t", "b", {})
        clock.now += 100
        await client.send(DEVICE, "t", "b", {})
        assert fcm.tokens_issued == 1  # still within its life
        clock.now += 10  # 110 s after issue: past the refresh point
        await client.send(DEVICE, "t", "b", {})
        assert fcm.tokens_issued == 2
        await client.send(DEVICE, "t", "b", {})
    finally:
        await client.close()
    assert (fcm.tokens_issued, len(fcm.delivered)) == (2, 4)


async def test_fcm_expired_token_answered_401_is_refreshed_once(fcm: FakeFcm) -> None:
    client = _fcm_client(fcm)
    try:
        await client.send(DEVICE, "t", "b", {})
        fcm.expire_tokens()  # the cached token is refused though its expiry has not come
        await client.send(DEVICE, "again", "b", {})
        assert (fcm.tokens_issued, [m["notification"]["title"] for m in fcm.delivered]) == (2, ["t", "again"])
        fcm.reject_tokens = True  # even fresh tokens refused: one refresh, then give up
        refused = await _push_error(client)
    finally:
        await client.close()
    assert (refused.kind, fcm.tokens_issued) == (PERMANENT, 3)


async def test_fcm_concurrent_sends_share_one_token_fetch(fcm: FakeFcm) -> None:
    client = _fcm_client(fcm)
    try:
        await asyncio.gather(*(client.send(DEVICE, "t", str(i), {}) for i in range(8)))
    finally:
        await client.close()
    assert (fcm.tokens_issued, len(fcm.delivered)) == (1, 8)


async def test_fcm_gone_device_tokens_are_told_apart_from_bad_messages(fcm: FakeFcm) -> None:
    fcm.unregistered.add(DEVICE)
    other = "fOther:APA91bHun4MxP5egoKMwt2KZFBaFUH-2"
    fcm.other_sender.add(other)
    client = _fcm_client(fcm)
    try:
        unregistered = await _push_error(client)
        assert (unregistered.kind, "UNREGISTERED" in unregistered.message) == (TOKEN_GONE, True)
        malformed = await _push_error(client, device="not-a-token")
        assert (malformed.kind, "INVALID_ARGUMENT" in malformed.message) == (TOKEN_GONE, True)
        # INVALID_ARGUMENT about our payload (a BadRequest detail, no FcmError): the token is fine.
        bad_payload = await _push_error(client, device="fGood:APA91bHun4MxP5egoKMwt2KZFBaFUH-3", data={"n": 3})
        assert bad_payload.kind == PERMANENT
        assert (await _push_error(client, device=other)).kind == PERMANENT
    finally:
        await client.close()
    assert fcm.delivered == []


async def test_fcm_provider_trouble_is_retryable(fcm: FakeFcm) -> None:
    client = _fcm_client(fcm)
    try:
        fcm.fail_next = [429, 500, 503]
        kinds = [(await _push_error(client)).kind for _ in range(3)]
        assert kinds == [RETRYABLE, RETRYABLE, RETRYABLE]
        await client.send(DEVICE, "t", "b", {})
    finally:
        await client.close()
    assert len(fcm.delivered) == 1


async def test_fcm_timeout_and_refused_connection_are_retryable(fcm: FakeFcm) -> None:
    slow = _fcm_client(fcm, timeout=0.2)
    account = ServiceAccount.from_json(fcm.service_account_json())
    gone = FcmPush(account, base_url=_closed_port_url())  # token endpoint up, FCM down
    try:
        fcm.hang = asyncio.Event()
        timed_out = await _push_error(slow)
        assert (timed_out.kind, "Timeout" in timed_out.message) == (RETRYABLE, True)
        fcm.hang.set()
        fcm.hang = None
        assert (await _push_error(gone)).kind == RETRYABLE
    finally:
        await slow.close()
        await gone.close()


async def test_fcm_token_endpoint_trouble_and_refusal(fcm: FakeFcm) -> None:
    client = _fcm_client(fcm)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = ServiceAccount.from_json(fcm.service_account_json())
    forged = ServiceAccount(
        forged.project_id,
        forged.client_email,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        forged.private_key_id,
        forged.token_uri,
    )
    impostor = FcmPush(forged, base_url=fcm.url)
    try:
        fcm.token_fail_next = [503]
        assert (await _push_error(client)).kind == RETRYABLE
        refused = await _push_error(impostor)  # signature does not verify: invalid_grant
        assert (refused.kind, "invalid_grant" in refused.message) == (PERMANENT, True)
        await client.send(DEVICE, "t", "b", {})  # the endpoint is back
    finally:
        await client.close()
        await impostor.close()
    assert (fcm.tokens_issued, len(fcm.delivered)) == (1, 1)


def test_service_account_json_is_checked() -> None:
    with pytest.raises(ValueError, match="token_uri"):
        ServiceAccount.from_json('{"project_id": "p", "client_email": "e", "private_key": "k"}')
    with pytest.raises(ValueError, match="not valid JSON"):
        ServiceAccount.from_json("{nope")
