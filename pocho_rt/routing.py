"""Asks and tells for actors this node does not serve travel to the shard's holder
(`engine.runtime.actor.Placement`, DESIGN "Sharding across nodes").

The holder is whoever holds the shard's Redis lease. While a shard moves (no holder yet, a
holder that has not taken its epoch, a holder that just died), an ask retries with a short
backoff until its own timeout, then answers `unavailable`: the client repeats it with the
same `clientMsgId`, which is safe. Tells keep their order per shard (one sender loop; a
shard that is moving holds up only its own tells) and are retried for a while, then dropped
with a warning: the actors re-derive what a tell
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
from pocho_rt.tasks import wake_or_sleep

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
        # Tells waiting to leave, per shard: in order per actor, and a shard that has no holder
        # yet (it is moving) holds up only its own tells.
        self._tells: dict[int, deque[tuple[float, str, str, Any]]] = {}
        self._queued = 0
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
        if self._queued >= MAX_QUEUED_TELLS:
            self.dropped_tells += 1
            log.warning("outgoing tell queue full, dropped one", extra={"actor": f"{kind}:{actor_id}"})
            return
        queue = self._tells.setdefault(self.node.shard(kind, actor_id), deque())
        queue.append((time.monotonic() + _TELL_PATIENCE, kind, actor_id, msg))
        self._queued += 1
        self._wake.set()

    async def run_tells(self) -> None:
        """Send queued tells, in order per shard (a supervisor loop)."""
        while True:
            if not self._tells:
                await self._wake.wait()
            self._wake.clear()
            if await self._send_queued():
                await wake_or_sleep(self._wake, _RETRY_MAX)  # some shard has no holder yet

    async def _send_queued(self) -> bool:
        """Send what can go now; True if some shard's tells must wait for a holder."""
        blocked = False
        for shard in list(self._tells):
            queue = self._tells[shard]
            while queue:
                give_up, kind, actor_id, msg = queue[0]
                sent = await self._send_tell(kind, actor_id, msg)
                raise_if_cancelled()  # redis-py can swallow our owner's cancel (adapters/pubsub.py)
                if not sent and time.monotonic() < give_up:
                    blocked = True
                    break  # this shard waits; the others go on
                queue.popleft()
                self._queued -= 1
                if not sent:
                    self.dropped_tells += 1
                    log.warning("no node took a tell in time, dropped", extra={"actor": f"{kind}:{actor_id}"})
            if not queue:
                del self._tells[shard]
        return blocked

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
