"""Ending live sockets of a session or a user, on every node.

`SessionEnder.end(room, reason)` is the one way to do it: room `sid:<sid>` for one login
session (logout), `user:<id>` for everything a user has open (refresh-token reuse, an
account disabled by ops). Every socket in that room on the three client namespaces gets
`session:revoked` {reason} and is then disconnected.

The base namespace puts each socket in both rooms on connect. python-socketio only knows
its own node's participants, so `end` handles this node directly and publishes
(room, reason) on a Redis channel; `run()`, a loop owned by the process supervisor, listens
on every node and ends the matching sockets there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import orjson
import socketio
from redis.asyncio import Redis

from adapters.pubsub import next_message

log = logging.getLogger("pocho.auth")
NAMESPACES = ("/customer", "/vendor", "/rider")
CHANNEL = "pocho:sessions:end"


async def end_local_sockets(sio: socketio.AsyncServer, room: str, reason: str) -> int:
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


class SessionEnder:
    def __init__(self, redis: Redis, sio: socketio.AsyncServer, node_id: str) -> None:
        self.redis = redis
        self.sio = sio
        # This app's id on the channel (node_id is not unique when tests run two apps in one process).
        self.origin = f"{node_id}/{uuid.uuid4().hex}"
        self.ready = asyncio.Event()  # set once subscribed (or once Redis proved away)

    async def end(self, room: str, reason: str) -> int:
        """End the sockets of `room` ("sid:<sid>" or "user:<id>") here and on every other node.

        Returns the number ended on this node. Never raises: revocation in Redis/PostgreSQL has
        already happened when this runs, so a failure here only leaves a socket to its token's
        natural expiry (and it can no longer reconnect).
        """
        ended = await end_local_sockets(self.sio, room, reason)
        try:
            await self.redis.publish(CHANNEL, orjson.dumps({"node": self.origin, "room": room, "reason": reason}))
        except Exception:
            log.exception("publishing a session end failed")
        return ended

    async def run(self) -> None:
        """Subscribe and serve until cancelled; resubscribe after a Redis failure."""
        while True:
            try:
                await self._listen_once()
            except Exception:
                log.warning("session-end listener lost Redis; retrying", exc_info=True)
                self.ready.set()  # do not hold up startup while Redis is away
                await asyncio.sleep(1.0)

    async def _listen_once(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            self.ready.set()
            while True:
                raw = await next_message(pubsub)
                if raw is None:
                    continue
                try:
                    data = orjson.loads(raw)
                    if data.get("node") != self.origin:
                        await end_local_sockets(self.sio, str(data["room"]), str(data["reason"]))
                except Exception:
                    log.exception("bad session-end message")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
