"""Several real `pocho-rt serve` processes over one PostgreSQL and one Redis (issue 9)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest

from engine.runtime.placement import shard_of
from pocho_rt.auth.passwords import hash_password
from pocho_rt.auth.tokens import TokenService
from scripts.sio_lite import LiteClient
from tests.e2e.util import LAGOS
from tests.nodes import SECRET, Node

ADMIN = {"X-Admin-Key": "dev-admin-key"}
RETRYABLE = {"unavailable", "timeout"}


@pytest.fixture
async def cluster(database_url: str, redis_url: str, clean: None) -> AsyncIterator[Callable[..., Node]]:
    """Factory of nodes with fixed ids (`n1`, `n2`, ...); every node is stopped after the test."""
    nodes: list[Node] = []

    def make(**env: str) -> Node:
        node = Node(database_url, redis_url, POCHO_NODE_ID=f"n{len(nodes) + 1}", **env)
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.stop()
        n.log.close()


async def start_all(*nodes: Node) -> None:
    await asyncio.gather(*(n.start() for n in nodes))


async def admin_get(node: Node, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(node.url + path, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def holders(node: Node) -> dict[int, str | None]:
    return {s["shard"]: s["node"] for s in (await admin_get(node, "/admin/shards"))["shards"]}


def owner(holding: dict[int, str | None], kind: str, key: str) -> str | None:
    return holding[shard_of(kind, key)]


@dataclass
class People:
    customers: list[str] = field(default_factory=list)  # tokens
    vendors: list[str] = field(default_factory=list)

    @property
    def vendor(self) -> str:
        return self.vendors[0]


async def people(db: asyncpg.Connection, customers: int, vendors: int = 1) -> People:
    """Customers and verified vendors near Lagos, with access tokens."""
    tokens = TokenService(SECRET, 3600)
    pw = await hash_password("cluster-test-pass")
    out = People()
    for i in range(customers + vendors):
        uid = uuid.uuid4()
        role = "VENDOR" if i >= customers else "CUSTOMER"
        await db.execute(
            "INSERT INTO users (id, phone, password_hash, role, first_name, last_name) "
            "VALUES ($1, $2, $3, $4, 'Cluster', 'Test')",
            uid,
            f"+23481{i:08d}",
            pw,
            role,
        )
        token = tokens.issue(str(uid), role, f"s{i}")[0]
        if role == "VENDOR":
            await db.execute(
                "INSERT INTO vendors (user_id, display_name, lat, lng, km_service_area, verified) "
                "VALUES ($1, 'Cluster Kitchen', $2, $3, 10, true)",
                uid,
                *LAGOS,
            )
            out.vendors.append(token)
        else:
            out.customers.append(token)
    return out


async def connected(session: aiohttp.ClientSession, node: Node, namespace: str, token: str) -> LiteClient:
    client = LiteClient(session, node.url, namespace)
    await client.connect({"token": token})
    return client


async def until_ok(
    client: LiteClient | Callable[[], Awaitable[LiteClient]],
    event: str,
    data: dict[str, Any],
    patience: float = 30.0,
) -> tuple[dict[str, Any], int]:
    """Send `event` until it is acked ok; the same `clientMsgId` each time, so a retry after
    `timeout` is safe. Only `unavailable`/`timeout` (a shard moving, a node gone) are retried:
    any other error fails the test. Returns (reply data, retries)."""
    data = {"clientMsgId": str(uuid.uuid4()), **data}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    retries = 0
    while True:
        c = client if isinstance(client, LiteClient) else await client()
        try:
            reply = await c.call(event, data, timeout=10)
        except (TimeoutError, ConnectionError):
            reply = {"ok": False, "error": {"code": "timeout"}}
        if reply["ok"]:
            return reply["data"], retries
        assert reply["error"]["code"] in RETRYABLE, reply
        retries += 1
        assert loop.time() < deadline, f"{event} still failing: {reply}"
        await asyncio.sleep(0.2)  # the shard is moving: nothing to await from the test's side
