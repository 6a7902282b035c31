"""Asks and tells for actors this node does not serve travel to the shard's holder
(`engine.runtime.actor.Placement`, DESIGN "Sharding across nodes").

The holder is whoever holds the shard's Redis lease. While a shard moves (no holder yet, a
holder that has not taken its epoch, a holder that just died), an ask retries with a short
backoff until its own timeout, then answers `unavailable`: the client repeats it with the
same `clientMsgId`, which is safe. Tells keep their order per target node (one sender loop)
and are retried the same way, then dropped with a warning: the actors re-derive what a tell
carries when they are next activated (timers from stored deadlines, assignments from state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from adapters.cluster import NotDelivered, Postman
from adapters.pubsub import raise_if_cancelled
from engine.errors import EngineError
from engine.runtime.actor import ActorSystem
from pocho_rt.cluster import ClusterNode

log = logging.getLogger("pocho.routing")

_RETRY_FIRST = 0.02  # seconds before the first retry while a shard has no usable holder
_RETRY_MAX = 0.5
_TELL_PATIENCE = 10.0  # seconds a tell keeps looking for a holder before it is dropped
MAX_QUEUED_TELLS = 100_000  # bound on tells waiting to leave this node
_HOLDER_TTL = 1.0  # seconds a shard's holder is remembered for forwarding asks


class Router:
    """Implements `Placement` for one node."""

    def __init__(self, node: ClusterNode, postman: Postman, system: ActorSystem) -> None:
        self.node = node
        self.postman = postman
        self.system = system
        self._tells: deque[tuple[float, str, str, Any]] = deque()
        self._wake = asyncio.Event()
        self.dropped_tells = 0
        self._holders: dict[int, tuple[str, float]] = {}  # shard -> (holder, when looked up)

    def here(self, kind: str, actor_id: str) -> bool:
        return self.node.accepts(self.node.shard(kind, actor_id))

    async def _holder(self, kind: str, actor_id: str, *, fresh: bool = False) -> str | None:
        """The node to send to now, or None (here after all, or nobody usable yet). Remembered
        for `_HOLDER_TTL` (a Redis round trip per forwarded message otherwise); a stale answer
        costs one extra hop, since the node it reaches forwards with a `fresh` lookup."""
        shard = self.node.shard(kind, actor_id)
        now = time.monotonic()
        known = None if fresh else self._holders.get(shard)
        if known is not None and now - known[1] < _HOLDER_TTL:
            holder: str | None = known[0]
        else:
            holder = await self.node.leases.holder(shard)
            if holder is None:
                self._holders.pop(shard, None)
            else:
                self._holders[shard] = (holder, now)
        return holder if holder is not None and holder != self.node.node_id else None

    async def ask(self, kind: str, actor_id: str, msg: Any, timeout: float, *, fresh: bool = False) -> Any:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        pause = _RETRY_FIRST
        while True:
            if self.here(kind, actor_id):  # the shard came here meanwhile
                return await self.system.ask(kind, actor_id, msg, max(deadline - time.monotonic(), 0.001))
            holder = await self._holder(kind, actor_id, fresh=fresh)
            if holder is not None:
                try:
                    return await self.postman.ask(holder, kind, actor_id, msg, max(deadline - time.monotonic(), 0.001))
                except NotDelivered:
                    self._holders.pop(self.node.shard(kind, actor_id), None)
            fresh = True  # retries look the holder up again
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineError("unavailable", "that item is moving between servers, retry")
            await asyncio.sleep(min(pause, left))  # backoff while nobody can take the message
            pause = min(pause * 2, _RETRY_MAX)

    def tell(self, kind: str, actor_id: str, msg: Any) -> None:
        if len(self._tells) >= MAX_QUEUED_TELLS:
            self.dropped_tells += 1
            log.warning("outgoing tell queue full, dropped one", extra={"actor": f"{kind}:{actor_id}"})
            return
        self._tells.append((time.monotonic() + _TELL_PATIENCE, kind, actor_id, msg))
        self._wake.set()

    async def run_tells(self) -> None:
        """Send queued tells in order (a supervisor loop)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._tells:
                give_up, kind, actor_id, msg = self._tells[0]
                sent = await self._send_tell(kind, actor_id, msg)
                raise_if_cancelled()  # redis-py can swallow our owner's cancel (adapters/pubsub.py)
                if sent:
                    self._tells.popleft()
                    continue
                if time.monotonic() >= give_up:
                    self._tells.popleft()
                    self.dropped_tells += 1
                    log.warning("no node took a tell in time, dropped", extra={"actor": f"{kind}:{actor_id}"})
                    continue
                await asyncio.sleep(_RETRY_MAX)  # no holder yet: wait for the shard to settle

    async def _send_tell(self, kind: str, actor_id: str, msg: Any) -> bool:
        if self.here(kind, actor_id):
            self.system.tell(kind, actor_id, msg)
            return True
        holder = await self._holder(kind, actor_id, fresh=True)  # tells are rare: no cached hops
        if holder is None:
            return False
        try:
            await self.postman.tell(holder, kind, actor_id, msg)
        except NotDelivered:
            return False
        return True

    async def serve_remote(self, kind: str, actor_id: str, msg: Any, wants_reply: bool) -> Any:
        """The Postman's handler: a message another node sent here (re-routed if the shard
        moved on meanwhile)."""
        if wants_reply:
            if self.here(kind, actor_id):
                return await self.system.ask(kind, actor_id, msg)
            # Sent here from a stale holder cache: look the holder up afresh, never from this
            # node's cache (two stale caches would bounce the message between them).
            return await self.ask(kind, actor_id, msg, self.system.ask_timeout, fresh=True)
        self.system.tell(kind, actor_id, msg)
        return None
