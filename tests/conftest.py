"""Test fixtures: real PostgreSQL and Redis (TEST_DATABASE_URL / TEST_REDIS_URL, else
embedded servers started once per session), a PostgreSQL database and a Redis database of
the session's own (test runs may overlap), and every test starting from empty tables and an
empty Redis database.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from redis.asyncio import Redis

from persistence.db import create_pool
from persistence.migrate import migrate
from pocho_rt.app import build_app, close_services, open_services
from pocho_rt.config import Settings
from pocho_rt.context import Services
from pocho_rt.embedded import EmbeddedServices
from pocho_rt.http.guard import make_runner
from tests.helpers import Client, close_pool


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def backing_urls() -> Iterator[tuple[str, str]]:
    """(admin database url, redis url) of real servers, embedded when not given."""
    db, rd = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    embedded = None
    if not db or not rd:
        embedded = EmbeddedServices(Path(tempfile.gettempdir()) / "pocho-test-services")
        embedded.start(need_pg=not db, need_redis=not rd)
        db = db or embedded.database_url
        rd = rd or embedded.redis_url
    assert db and rd
    try:
        yield db, rd
    finally:
        if embedded:
            embedded.stop()


@pytest.fixture(scope="session")
async def database_url(backing_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A database of our own for this session, migrated once."""
    admin_url, _ = backing_urls
    name = f"pocho_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(admin_url, name)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _redis_db(url: str) -> int | None:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        dbs = [p[3:] for p in parts.query.split("&") if p.startswith("db=")]
        return int(dbs[0]) if dbs else None
    return int(parts.path.strip("/")) if parts.path.strip("/") else None


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [p for p in parts.query.split("&") if p and not p.startswith("db=")]
        return urlunsplit(parts._replace(query="&".join([*query, f"db={db}"])))
    return urlunsplit(parts._replace(path=f"/{db}"))


_CLAIMS_DB = 0  # where runs record which Redis database each one uses; never handed to a run
_CLAIM_SECONDS = 3 * 3600  # a run killed without cleanup frees its database after this
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@pytest.fixture(scope="session")
async def redis_url(backing_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A Redis database of this run's own, flushed before each test: the one TEST_REDIS_URL names
    (9 by default) or, while another run holds it, the next free one. Two runs sharing one
    database would flush and count each other's keys (rate limits, sessions) mid-test."""
    base = backing_urls[1]
    first = _redis_db(base)
    claims = Redis.from_url(_with_redis_db(base, _CLAIMS_DB))
    token = uuid.uuid4().hex
    chosen: int | None = None
    try:
        for db in range(max(9 if first is None else first, _CLAIMS_DB + 1), 16):
            key = f"pocho:test:redis-db:{db}"
            if await claims.set(key, token, nx=True, ex=_CLAIM_SECONDS):
                chosen = db
                break
        assert chosen is not None, "every Redis database a test run may use is held by another run"
        yield _with_redis_db(base, chosen)
    finally:
        if chosen is not None:
            await claims.eval(_RELEASE, 1, f"pocho:test:redis-db:{chosen}", token)
        await claims.aclose()


@pytest.fixture(scope="session")
async def _tables(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
    )
    await conn.close()
    return [r["tablename"] for r in rows]


@pytest.fixture
async def clean(database_url: str, redis_url: str, _tables: list[str]) -> None:
    """Empty tables and Redis before the test: each test sees only its own data."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in _tables) + " RESTART IDENTITY CASCADE")
    await conn.close()
    r = Redis.from_url(redis_url)
    await r.flushdb()
    await r.aclose()


@pytest.fixture
async def db(database_url: str, clean: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def pool(database_url: str, clean: None) -> AsyncIterator[asyncpg.Pool]:
    """A small pool of the server's own kind (its codecs) on the cleaned test database."""
    p = await create_pool(database_url, size=4)
    try:
        yield p
    finally:
        await close_pool(p)


@pytest.fixture
async def redis(redis_url: str, clean: None) -> AsyncIterator[Redis]:
    r = Redis.from_url(redis_url)
    try:
        yield r
    finally:
        await r.aclose()


class Server:
    """One in-process node on a real TCP port: tests reach it over real HTTP/Socket.IO."""

    def __init__(self, svc: Services, runner: web.AppRunner, url: str) -> None:
        self.svc, self.runner, self.url = svc, runner, url

    async def stop(self) -> None:
        await self.runner.cleanup()
        await close_services(self.svc)


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server(database_url: str, redis_url: str, clean: None) -> AsyncIterator[StartServer]:
    """Factory: start a node with settings overrides (e.g. rate_limit_enabled=False)."""
    started: list[Server] = []

    async def _start(*, via_db: str | None = None, via_redis: str | None = None, **overrides: Any) -> Server:
        """`via_db` / `via_redis`: reach storage at another URL (a proxy in front of the same servers)."""
        # Each in-process node is a node of its own (the default id, host+pid, is the same for all).
        overrides.setdefault("node_id", f"test-{uuid.uuid4().hex[:8]}")
        settings = Settings(port=0, host="127.0.0.1", db_pool_size=5, **overrides)
        svc = await open_services(settings, via_db or database_url, via_redis or redis_url)
        app = build_app(svc)
        runner = make_runner(app, settings, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server = Server(svc, runner, f"http://127.0.0.1:{port}")
        started.append(server)
        return server

    yield _start
    for s in reversed(started):
        await s.stop()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        c = Client(session, server)
        try:
            yield c
        finally:
            await c.close()
