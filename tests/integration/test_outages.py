"""Storage outages answered fast and honestly (issue 14, points 1-3).

A node reaches the real PostgreSQL and Redis through TCP proxies (tests/proxy.py) that
cut them (connections dropped, new ones refused) or freeze them (connections held, nothing
forwarded). What the clients must get:

1. deadlines: with PostgreSQL or Redis frozen, HTTP routes, socket connects and socket
   commands answer `unavailable` within the configured deadlines instead of hanging on the
   driver (the `wait_for` bounds below are far above the deadlines and far below the
   driver's 30-60 s: they only stop a hang from passing), and one stuck command does not
   block the next on the same socket;
2. storage down is 503 `unavailable` with Retry-After, never 500; the first request after
   Redis returns succeeds (stale connections are retried);
3. `unavailable` only for commands that were not applied, `timeout` while the outcome is not
   known, and a retried `clientMsgId` learns the stored answer once PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import Server, StartServer
from tests.e2e.util import Party, customer, request_payload, vendor
from tests.helpers import PASSWORD, Client
from tests.proxy import TcpProxy, pg_target, redis_target, redis_via_proxy, started, via_proxy

GUARD = 15.0  # seconds: a hang fails the test; the deadlines under test are 0.5 s
FAST = {"db_acquire_timeout": 0.5, "db_query_timeout": 0.5, "redis_timeout": 0.5, "rate_limit_enabled": True}


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[TcpProxy]:
    proxy = await started(pg_target(database_url))
    yield proxy
    await proxy.close()


@pytest.fixture
async def rd(redis_url: str) -> AsyncIterator[TcpProxy]:
    proxy = await started(redis_target(redis_url))
    yield proxy
    await proxy.close()


@pytest.fixture
async def node(start_server: StartServer, database_url: str, redis_url: str, pg: TcpProxy, rd: TcpProxy) -> Server:
    return await start_server(
        via_db=via_proxy(database_url, pg.port), via_redis=redis_via_proxy(redis_url, rd.port), **FAST
    )


@pytest.fixture
async def client(node: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(base_url=node.url) as session:
        c = Client(session, node)
        try:
            yield c
        finally:
            await c.close()


async def call(client: Client, method: str, path: str, **kw: Any) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    """One HTTP call that may not hang: (status, JSON body, headers)."""
    h = dict(kw.pop("headers", None) or {})
    if token := kw.pop("token", None):
        h["Authorization"] = f"Bearer {token}"

    async def _do() -> tuple[int, Any, Any]:
        async with client.session.request(method, path, headers=h, **kw) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers

    return await asyncio.wait_for(_do(), GUARD)


def assert_unavailable(status: int, body: Any, headers: Any) -> None:
    assert status == 503, body
    assert body["error"]["code"] == "unavailable", body
    assert headers.get("Retry-After"), headers


async def login(client: Client, user: dict[str, Any]) -> tuple[int, Any, Any]:
    return await call(client, "POST", "/api/v1/auth/login", json={"phone": user["phone"], "password": PASSWORD})


async def logged_in_routes(client: Client, token: str) -> list[tuple[int, Any, Any]]:
    return [
        await call(client, "GET", "/api/v1/meal-requests", token=token),
        await call(client, "GET", "/api/v1/search?q=rice", token=token),
        await call(client, "GET", "/api/v1/orders", token=token),
    ]


async def ack(party: Party, event: str, data: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = await asyncio.wait_for(
        party.sio.call(event, data, namespace=party.namespace, timeout=GUARD), GUARD + 1
    )
    return reply


async def refused_code(client: Client, namespace: str, token: str) -> object:
    """Connect; the connect_error code the server sent (or "connected")."""
    sio = socketio.AsyncClient(reconnection=False)
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    sio.on("connect_error", lambda data: got.done() or got.set_result(data), namespace=namespace)
    try:
        await sio.connect(
            client.server.url,
            namespaces=[namespace],
            auth={"token": token},
            transports=["websocket"],
            wait_timeout=GUARD,
        )
    except socketio.exceptions.ConnectionError:
        data = await asyncio.wait_for(got, GUARD)
        assert isinstance(data, dict) and data["message"] == data["data"]["code"], data
        return data["data"]["code"]
    finally:
        await sio.disconnect()
    return "connected"


# ---------------------------------------------------------------- 2. storage down is 503, never 500


async def test_postgres_cut_answers_503_with_retry_after(client: Client, pg: TcpProxy) -> None:
    user = (await client.register("CUSTOMER"))["user"]
    token = (await login(client, user))[1]["tokens"]["accessToken"]
    pg.cut()
    for _ in range(6):  # more than the 5 failed logins a phone may have: these are not failures
        assert_unavailable(*await login(client, user))
    for answer in await logged_in_routes(client, token):
        assert_unavailable(*answer)
    register = await call(
        client,
        "POST",
        "/api/v1/auth/register",
        json={"phone": "+2348099990001", "password": PASSWORD, "role": "CUSTOMER", "firstName": "A", "lastName": "B"},
    )
    assert_unavailable(*register)
    pg.restore()
    status, body, _ = await login(client, user)
    assert status == 200, body  # not 429: the outage took no login slots
    assert all(a[0] == 200 for a in await logged_in_routes(client, token))


async def test_redis_cut_answers_503_and_the_first_request_after_it_returns_succeeds(
    client: Client, rd: TcpProxy
) -> None:
    user = (await client.register("CUSTOMER"))["user"]
    token = (await login(client, user))[1]["tokens"]["accessToken"]
    rd.cut()
    assert_unavailable(*await login(client, user))  # the login rate limit lives in Redis
    for answer in await logged_in_routes(client, token):  # so does token revocation
        assert_unavailable(*answer)
    rd.restore()
    # Every pooled Redis connection died in the cut: the very first requests must still succeed.
    status, body, _ = await login(client, user)
    assert status == 200, body
    assert [a[0] for a in await logged_in_routes(client, token)] == [200, 200, 200]


# ---------------------------------------------------------------- 1. deadlines: frozen storage


async def test_frozen_postgres_answers_unavailable_and_a_stuck_command_blocks_nothing(
    client: Client, pg: TcpProxy, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    seller = await vendor(client, db)
    user = cust.user | {"phone": cust.user["phone"]}
    pg.freeze()
    try:
        assert_unavailable(*await login(client, user))
        for answer in await logged_in_routes(client, cust.token):
            assert_unavailable(*answer)
        # A vendor connect reads its profile from PostgreSQL: refused `unavailable`, not hung.
        assert await refused_code(client, "/vendor", seller.token) == "unavailable"
        # Two commands in a row on one socket: both answered, the second not stuck behind the first.
        first = ack(cust, "request:create", request_payload(clientMsgId="frozen-1"))
        second = ack(cust, "request:create", request_payload(clientMsgId="frozen-2"))
        for reply in await asyncio.gather(first, second):
            assert reply["ok"] is False and reply["error"]["code"] == "unavailable", reply
    finally:
        pg.restore()
    created = await ack(cust, "request:create", request_payload(clientMsgId="frozen-1"))
    assert created["ok"] is True, created
    assert await db.fetchval("SELECT count(*) FROM meal_requests") == 1  # the refused ones left nothing


async def test_frozen_redis_answers_unavailable(client: Client, rd: TcpProxy) -> None:
    cust = await client.register("CUSTOMER")
    token = cust["tokens"]["accessToken"]
    rd.freeze()
    try:
        assert_unavailable(*await login(client, cust["user"]))
        for answer in await logged_in_routes(client, token):
            assert_unavailable(*answer)
        assert await refused_code(client, "/customer", token) == "unavailable"  # revocation check
    finally:
        rd.restore()
    status, body, _ = await login(client, cust["user"])
    assert status == 200, body


# ---------------------------------------------------------------- 3. timeout versus unavailable


async def test_refused_before_the_writer_is_unavailable_and_nothing_is_applied(
    client: Client, pg: TcpProxy, db: asyncpg.Connection
) -> None:
    cust = await customer(client)
    pg.cut()
    try:
        reply = await ack(cust, "request:create", request_payload(clientMsgId="cut-1"))
        assert reply["ok"] is False and reply["error"]["code"] == "unavailable", reply
    finally:
        pg.restore()
    assert await db.fetchval("SELECT count(*) FROM meal_requests") == 0
    again = await ack(cust, "request:create", request_payload(clientMsgId="cut-1"))
    assert again["ok"] is True, again  # not applied before, so the retry applies it now
    assert await db.fetchval("SELECT count(*) FROM meal_requests") == 1


async def test_revision_during_an_outage_is_timeout_then_committed_once_and_a_retry_learns_it(
    start_server: StartServer, database_url: str, redis_url: str, pg: TcpProxy, rd: TcpProxy, db: asyncpg.Connection
) -> None:
    node = await start_server(
        via_db=via_proxy(database_url, pg.port),
        via_redis=redis_via_proxy(redis_url, rd.port),
        ask_timeout_seconds=1.0,
        **FAST,
    )
    async with aiohttp.ClientSession(base_url=node.url) as session:
        c = Client(session, node)
        try:
            cust, seller = await customer(c), await vendor(c, db)
            req = (await cust.ok("request:create", request_payload()))["request"]
            offer = (await seller.ok("offer:place", {"requestId": req["id"], "priceKobo": 400_000}))["offer"]
            revise = {"offerId": offer["id"], "priceKobo": 350_000, "clientMsgId": "rev-1"}
            pg.cut()
            try:
                # The actor applied it and handed it to the writer, which cannot reach PostgreSQL.
                first = await ack(seller, "offer:revise", revise)
                assert first["ok"] is False and first["error"]["code"] == "timeout", first
                retried = await ack(seller, "offer:revise", revise)  # still unknown
                assert retried["ok"] is False and retried["error"]["code"] == "timeout", retried
            finally:
                pg.restore()
            # As a client does: repeat while the answer is `timeout` (the writer reconnects with back-off).
            for _ in range(30):
                stored = await ack(seller, "offer:revise", revise)
                if stored["ok"] or stored["error"]["code"] != "timeout":
                    break
            assert stored["ok"] is True, stored
            assert stored["data"]["offer"]["priceKobo"] == 350_000
            again = await ack(seller, "offer:revise", revise)
            assert again == stored  # the first answer, not a second revision
            revisions = await db.fetchval(
                "SELECT count(*) FROM negotiation_events WHERE request_id = $1 AND kind = 'offer:updated'",
                req["id"],
            )
            assert revisions == 1
        finally:
            await c.close()
