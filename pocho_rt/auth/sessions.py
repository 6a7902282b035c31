"""Ending live sockets of a session or a user, on every node.

`end_sockets(svc, room, reason)` is the one way to do it: room `sid:<sid>` for one login
session (logout), `user:<id>` for everything a user has open (refresh-token reuse, an
account disabled by ops). Every socket in that room on the three client namespaces gets
`session:revoked` {reason} and is then disconnected.

The base namespace puts each socket in both rooms on connect. python-socketio only knows
its own node's participants, so the call handles this node directly and publishes
(room, reason) on a Redis channel; `listen(svc)` runs on every node (started by
`pocho_rt.http.accounts.setup`) and ends the matching sockets there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from pocho_rt.context import SERVICES, Services

log = logging.getLogger("pocho.auth")
NAMESPACES = ("/customer", "/vendor", "/rider")
CHANNEL = "pocho:sessions:end"
_LISTENER = "sessions_listener"


async def end_local_sockets(sio: Any, room: str, reason: str) -> int:
    """Tell and disconnect this node's sockets in `room`; returns how many were ended."""
    ended = 0
    for ns in NAMESPACES:
        sids = [sid for sid, _ in sio.manager.get_participants(ns, room)]
        for sid in sids:
            try:
                await sio.emit("session:revoked", {"reason": reason}, to=sid, namespace=ns)
                await sio.disconnect(sid, namespace=ns)
                ended += 1
            except Exception:
                log.exception("ending a socket failed", extra={"namespace": ns})
    return ended


async def end_sockets(svc: Services, room: str, reason: str) -> int:
    """End the sockets of `room` ("sid:<sid>" or "user:<id>") here and on every other node.

    Returns the number ended on this node. Never raises: revocation in Redis/PostgreSQL has
    already happened when this runs, so a failure here only leaves a socket to its token's
    natural expiry (and it can no longer reconnect).
    """
    sio = svc.extras.get("sio")
    ended = await end_local_sockets(sio, room, reason) if sio is not None else 0
    try:
        await svc.redis.publish(CHANNEL, orjson.dumps({"node": svc.node_id, "room": room, "reason": reason}))
    except Exception:
        log.exception("publishing a session end failed")
    return ended


async def _listen(svc: Services, ready: asyncio.Event) -> None:
    pubsub = svc.redis.pubsub()
    try:
        await pubsub.subscribe(CHANNEL)
        ready.set()
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if msg is None:
                continue
            try:
                data = orjson.loads(msg["data"])
                if data.get("node") == svc.node_id:
                    continue
                sio = svc.extras.get("sio")
                if sio is not None:
                    await end_local_sockets(sio, str(data["room"]), str(data["reason"]))
            except Exception:
                log.exception("bad session-end message")
    finally:
        ready.set()
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: run the cross-node listener while the app runs."""
    svc = app[SERVICES]
    ready = asyncio.Event()
    task = asyncio.create_task(_listen(svc, ready), name="sessions-listener")
    svc.extras[_LISTENER] = task
    await ready.wait()
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    svc.extras.pop(_LISTENER, None)
