"""Login and verification-SMS rate limits (Redis, fixed window) and the switch that disables them."""

from __future__ import annotations

from typing import Any

import aiohttp

from pocho_rt import ratelimit
from pocho_rt.metrics import RATE_LIMITED
from tests.conftest import StartServer
from tests.helpers import PASSWORD, Client, new_phone

LOGIN = "/api/v1/auth/login"


def _limited(limit: str) -> float:
    return RATE_LIMITED.labels(limit)._value.get()  # type: ignore[attr-defined, no-any-return]


async def test_failed_logins_for_one_phone_hit_429(client: Client) -> None:
    reg = await client.register()
    phone = reg["user"]["phone"]
    before = _limited("login_phone")
    for _ in range(ratelimit.LOGIN_PER_PHONE.max_hits):
        status, body = await client.call("POST", LOGIN, {"phone": phone, "password": "wrong-password-1"})
        assert status == 401, body
    async with client.session.post(LOGIN, json={"phone": phone, "password": PASSWORD}) as resp:
        body = await resp.json()
        assert resp.status == 429 and body["error"]["code"] == "rate_limited"
        retry = int(resp.headers["Retry-After"])
        assert 0 < retry <= ratelimit.LOGIN_PER_PHONE.window
    assert _limited("login_phone") == before + 1
    # Another phone from the same IP is not affected.
    other = await client.register()
    assert (await client.call("POST", LOGIN, {"phone": other["user"]["phone"], "password": PASSWORD}))[0] == 200


async def test_successful_logins_do_not_count(client: Client) -> None:
    reg = await client.register()
    for _ in range(ratelimit.LOGIN_PER_PHONE.max_hits + 3):
        assert (await client.call("POST", LOGIN, {"phone": reg["user"]["phone"], "password": PASSWORD}))[0] == 200


async def test_failed_logins_from_one_ip_hit_429(client: Client) -> None:
    statuses = []
    for _ in range(ratelimit.LOGIN_PER_IP.max_hits + 1):
        status, _ = await client.call("POST", LOGIN, {"phone": new_phone(), "password": "wrong-password-1"})
        statuses.append(status)
    assert statuses[:-1] == [401] * ratelimit.LOGIN_PER_IP.max_hits and statuses[-1] == 429


async def test_parallel_guesses_cannot_overshoot(client: Client) -> None:
    reg = await client.register()
    import asyncio

    payload = {"phone": reg["user"]["phone"], "password": "wrong-password-1"}
    results = await asyncio.gather(*(client.call("POST", LOGIN, payload) for _ in range(12)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(401) == ratelimit.LOGIN_PER_PHONE.max_hits and statuses.count(429) == 7


async def test_verify_request_is_limited_per_user(client: Client) -> None:
    reg = await client.register()
    token = reg["tokens"]["accessToken"]
    for _ in range(ratelimit.VERIFY_REQUEST_PER_USER.max_hits):
        assert (await client.call("POST", "/api/v1/auth/verify/request", token=token))[0] == 202
    async with client.session.post("/api/v1/auth/verify/request", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 429 and "Retry-After" in resp.headers


async def test_limits_off_when_disabled(start_server: StartServer) -> None:
    server = await start_server(rate_limit_enabled=False)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        reg: dict[str, Any] = await client.register()
        token = reg["tokens"]["accessToken"]
        for _ in range(ratelimit.LOGIN_PER_PHONE.max_hits + 3):
            status, _ = await client.call("POST", LOGIN, {"phone": reg["user"]["phone"], "password": "wrong-pass-1"})
            assert status == 401
        assert (await client.call("POST", LOGIN, {"phone": reg["user"]["phone"], "password": PASSWORD}))[0] == 200
        for _ in range(ratelimit.VERIFY_REQUEST_PER_USER.max_hits + 1):
            assert (await client.call("POST", "/api/v1/auth/verify/request", token=token))[0] == 202
        assert not await server.svc.redis.keys("pocho:rl:*")
