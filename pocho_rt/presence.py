"""Which vendors are looking at which open request, for the customer's `presence` event.

A vendor "views" a request from `request:watch` on /vendor until `request:unwatch` or its
socket goes away; several sockets of one vendor count once, on any node. Each node keeps its
own sockets' views in memory (`Presence`) and publishes, per request, the set of vendors
viewing it from this node to Redis (`PresenceBoard`); the count is the union over the live
nodes, so a node that died stops counting when its membership lease runs out.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

from redis.asyncio import Redis

log = logging.getLogger("pocho.presence")

_BOARD = "pocho:presence:"  # + request id: hash node id -> newline-separated vendor ids
_BOARD_TTL = 24 * 3600  # seconds; requests close long before (a dead node's fields are skipped)


class Presence:
    def __init__(self) -> None:
        self._viewers: dict[str, Counter[str]] = defaultdict(Counter)  # request -> vendor -> sockets
        self._by_sid: dict[str, dict[str, str]] = defaultdict(dict)  # sid -> request -> vendor

    def vendors(self, request_id: str) -> set[str]:
        return set(self._viewers.get(request_id, ()))

    def watching(self, sid: str) -> int:
        return len(self._by_sid.get(sid, ()))

    def join(self, sid: str, request_id: str, vendor_id: str) -> bool:
        """Record a view; True when the number of distinct vendors changed."""
        if request_id in self._by_sid[sid]:
            return False
        self._by_sid[sid][request_id] = vendor_id
        viewers = self._viewers[request_id]
        viewers[vendor_id] += 1
        return viewers[vendor_id] == 1

    def leave(self, sid: str, request_id: str) -> bool:
        vendor_id = self._by_sid.get(sid, {}).pop(request_id, None)
        if vendor_id is None:
            return False
        viewers = self._viewers[request_id]
        viewers[vendor_id] -= 1
        changed = viewers[vendor_id] == 0
        if changed:
            del viewers[vendor_id]
        if not viewers:
            del self._viewers[request_id]
        if not self._by_sid.get(sid):
            self._by_sid.pop(sid, None)
        return changed

    def leave_all(self, sid: str) -> list[str]:
        """Forget a socket; the requests whose count changed."""
        return [r for r in list(self._by_sid.get(sid, {})) if self.leave(sid, r)]


class PresenceBoard:
    """Every node's viewers of a request, in Redis, for counts that span nodes."""

    def __init__(self, redis: Redis, node_id: str, live: Callable[[], list[str]]) -> None:
        self.redis = redis
        self.node_id = node_id
        self.live = live

    async def reset(self) -> int:
        """Forget what an earlier process under this node id published (its sockets are gone,
        but the id is live again): done once at start. Returns the entries removed."""
        removed = 0
        async for key in self.redis.scan_iter(match=_BOARD + "*", count=1000):
            removed += await self.redis.hdel(key, self.node_id)
        return removed

    async def publish(self, request_id: str, vendors: set[str]) -> int:
        """Record this node's viewers of `request_id`; return the distinct viewers on all
        live nodes (this node's alone if Redis cannot answer)."""
        key = _BOARD + request_id
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                if vendors:
                    pipe.hset(key, self.node_id, "\n".join(sorted(vendors)))
                    pipe.expire(key, _BOARD_TTL)
                else:
                    pipe.hdel(key, self.node_id)
                pipe.hgetall(key)
                fields = (await pipe.execute())[-1]
        except Exception as exc:  # Redis away: this node's own count is the best answer
            log.warning("presence board unavailable", extra={"error": type(exc).__name__})
            return len(vendors)
        return self._union(fields, vendors)

    async def count(self, request_id: str, vendors: set[str]) -> int:
        """Distinct viewers of `request_id` on all live nodes (`vendors`: this node's)."""
        try:
            fields = await self.redis.hgetall(_BOARD + request_id)
        except Exception as exc:
            log.warning("presence board unavailable", extra={"error": type(exc).__name__})
            return len(vendors)
        return self._union(fields, vendors)

    def _union(self, fields: Mapping[bytes | str, bytes | str], vendors: set[str]) -> int:
        live = set(self.live())
        seen = set(vendors)
        for node, blob in fields.items():
            name = node.decode() if isinstance(node, bytes) else node
            if name != self.node_id and name in live:
                seen.update((blob.decode() if isinstance(blob, bytes) else blob).split("\n"))
        return len(seen)
