"""Serving a fake provider: an aiohttp app on 127.0.0.1 at a free port, as every fake does."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, str]:
    """Start `app`; returns its runner (to clean up) and its base URL."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
