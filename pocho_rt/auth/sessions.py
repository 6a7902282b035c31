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
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from pocho_rt.context import SERVICES, Services

log = logging.getLogger("pocho.auth")
NAMESPACES = ("/customer", "/vendor", "/rider")
CHANNEL = "pocho:sessions:end"
_LISTENER = "sessions_listener"
_ORIGIN = "sessions_origin"


def _origin(svc: Services) -> str:
    """This app's id on the channel (node_id is not unique when tests run two apps in one process)."""
    origin: str = svc.extras.setdefault(_ORIGIN, f"{svc.node_id}/{uuid.uuid4().hex}")
    return origin


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
        await svc.redis.publish(CHANNEL, orjson.dumps({"node": _origin(svc), "room": room, "reason": reason}))
    except Exception:
        log.exception("publishing a session end failed")
    return ended


async def _listen_once(svc: Services, origin: str, ready: asyncio.Event) -> None:
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
                if data.get("node") == origin:
                    continue
                sio = svc.extras.get("sio")
                if sio is not None:
                    await end_local_sockets(sio, str(data["room"]), str(data["reason"]))
            except Exception:
                log.exception("bad session-end message")
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _listen(svc: Services, ready: asyncio.Event) -> None:
    """Subscribe and serve until cancelled; resubscribe after a Redis failure."""
    origin = _origin(svc)
    while True:
        try:
            await _listen_once(svc, origin, ready)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("session-end listener lost Redis; retrying", exc_info=True)
            ready.set()  # do not hold up startup while Redis is away
            await asyncio.sleep(1.0)


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
