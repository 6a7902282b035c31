"""HTTP routes: accounts (PROTOCOL)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()


def setup(app: web.Application) -> None:
    app.add_routes(routes)
