"""Serving a fake provider: an aiohttp app on 127.0.0.1 at a free port, as every fake does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

from aiohttp import web


async def serve(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """Start `app`; returns its runner (to clean up) and its base URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class _Fake(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


F = TypeVar("F", bound=_Fake)


@contextlib.asynccontextmanager
async def running(fake: F) -> AsyncIterator[F]:
    """A fake provider started for the block and stopped after it (fixtures yield from this)."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
