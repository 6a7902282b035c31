"""The Redis half of sharding (DESIGN "Sharding across nodes"): node membership and shard
leases. The PostgreSQL half, fencing epochs, is `persistence/shards.py`.

Membership: each node renews a heartbeat lease; the live set is the nodes whose lease has
not run out, read in the same round trip as the renewal. Expiry times come from Redis's own
clock (`TIME` inside the script), so nodes with skewed clocks still agree on who is live.

Shard leases: `SET NX PX` takes a free shard; renewal and release are compare-and-set
scripts, so a node never extends or deletes a lease another node took after its own ran
out. A lease's local validity is counted from *before* the request that set it was sent
(`asyncio` monotonic time), minus a safety margin, so a node stops serving a shard before
Redis can hand it to anyone else, however slow the round trip was.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from adapters import wire
from adapters.pubsub import next_message
from engine.errors import EngineError

log = logging.getLogger("pocho.cluster")

NODES = "pocho:cluster:nodes"  # zset: node id -> lease expiry (Redis ms)
NODE_INFO = "pocho:cluster:node:"  # + node id: JSON {address, started}, with the lease's TTL
SHARD = "pocho:cluster:shard:"  # + shard: the holding node id, with the lease's TTL

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"""

# KEYS: shard keys; ARGV[1] node id, ARGV[2] lease ms. Returns 1/0 per key: still ours.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('PEXPIRE', key, ARGV[2])
        out[i] = 1
    else
        out[i] = 0
    end
end
return out
"""

# KEYS: shard keys; ARGV[1] node id, ARGV[2] lease ms. Returns 1/0 per key: ours now.
_ACQUIRE = """
local out = {}
for i, key in ipairs(KEYS) do
    if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
        out[i] = 1
    elseif redis.call('GET', key) == ARGV[1] then
        redis.call('PEXPIRE', key, ARGV[2])
        out[i] = 1
    else
        out[i] = 0
    end
end
return out
"""

_RELEASE = """
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
    end
end
return 1
"""

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    address: str
    started: str
    heartbeat: str  # when its lease was last renewed (ISO 8601, by Redis's clock)


class Membership:
    """This node's heartbeat lease and the live set it sees."""

    def __init__(self, redis: Redis, node_id: str, *, lease_ms: int, address: str, started: str) -> None:
        self.redis = redis
        self.node_id = node_id
        self.lease_ms = lease_ms
        self._info = orjson.dumps({"address": address, "started": started, "leaseMs": lease_ms})
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._leave = redis.register_script(_LEAVE)

    async def heartbeat(self) -> list[str]:
        """Renew this node's lease; return the live node ids (this one included), sorted."""
        live = await self._heartbeat(
            keys=[NODES, NODE_INFO + self.node_id], args=[self.node_id, self.lease_ms, self._info]
        )
        return sorted(_text(n) for n in live)

    async def leave(self) -> None:
        """Drop out at once (clean shutdown) instead of waiting for the lease to run out."""
        await self._leave(keys=[NODES, NODE_INFO + self.node_id], args=[self.node_id])

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes with what they registered (for ops)."""
        now = _redis_ms(await self.redis.time())
        live = cast(list[tuple[bytes, float]], await self.redis.zrangebyscore(NODES, now, "+inf", withscores=True))
        scored = sorted((_text(member), int(expiry)) for member, expiry in live)
        if not scored:
            return []
        raw = await self.redis.mget([NODE_INFO + i for i, _ in scored])
        out = []
        for (node_id, expiry), blob in zip(scored, raw, strict=True):
            info = orjson.loads(blob) if blob else {}
            beat = datetime.fromtimestamp((expiry - int(info.get("leaseMs", self.lease_ms))) / 1000, UTC)
            out.append(
                NodeInfo(
                    node_id,
                    str(info.get("address", "")),
                    str(info.get("started", "")),
                    beat.isoformat(timespec="milliseconds"),
                )
            )
        return out


def _redis_ms(t: tuple[int, int]) -> int:
    return int(t[0]) * 1000 + int(t[1]) // 1000


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ShardLeases:
    """Shard leases held by this node, with the local deadline past which it must not serve."""

    def __init__(self, redis: Redis, node_id: str, *, lease_ms: int, margin_ms: int) -> None:
        if margin_ms >= lease_ms:
            raise ValueError("the safety margin must be shorter than the lease")
        self.redis = redis
        self.node_id = node_id
        self.lease_ms = lease_ms
        self.margin_ms = margin_ms
        self.valid_until: dict[int, float] = {}  # shard -> monotonic deadline for serving it
        self._renew = redis.register_script(_RENEW)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    def _deadline(self, sent_at: float) -> float:
        return sent_at + (self.lease_ms - self.margin_ms) / 1000.0

    def valid(self, shard: int, now: float | None = None) -> bool:
        """Whether this node may serve `shard` right now."""
        until = self.valid_until.get(shard)
        return until is not None and (time.monotonic() if now is None else now) < until

    async def acquire(self, shard: int) -> bool:
        """Take a free shard's lease (False if another node holds it)."""
        return shard in await self.acquire_many([shard])

    async def acquire_many(self, shards: Iterable[int]) -> set[int]:
        """Take the free ones of `shards` (and those this node already holds) in one round
        trip; return the shards now held."""
        wanted = sorted(shards)
        if not wanted:
            return set()
        sent_at = time.monotonic()
        got = await self._acquire(keys=[SHARD + str(s) for s in wanted], args=[self.node_id, self.lease_ms])
        taken = {shard for shard, ok in zip(wanted, got, strict=True) if ok}
        for shard in taken:
            self.valid_until[shard] = self._deadline(sent_at)
        return taken

    async def renew(self, shards: Iterable[int] | None = None) -> set[int]:
        """Extend the leases of `shards` (default: all held); return the shards lost (another
        node holds them, or they ran out). Lost shards are forgotten here at once."""
        wanted = sorted(self.valid_until if shards is None else shards)
        if not wanted:
            return set()
        sent_at = time.monotonic()
        kept = await self._renew(keys=[SHARD + str(s) for s in wanted], args=[self.node_id, self.lease_ms])
        lost = set()
        for shard, ok in zip(wanted, kept, strict=True):
            if ok:
                self.valid_until[shard] = self._deadline(sent_at)
            else:
                lost.add(shard)
                self.valid_until.pop(shard, None)
        return lost

    async def release(self, shard: int) -> None:
        """Give a shard up (after its actors are flushed and passivated)."""
        await self.release_many([shard])

    async def release_many(self, shards: Iterable[int]) -> None:
        """Give shards up in one round trip (those another node holds by now are left alone)."""
        keys = [SHARD + str(s) for s in sorted(shards)]
        for shard in shards:
            self.valid_until.pop(shard, None)
        if keys:
            await self._release(keys=keys, args=[self.node_id])

    async def holder(self, shard: int) -> str | None:
        """The node holding `shard`'s lease in Redis now, if any."""
        raw = await self.redis.get(SHARD + str(shard))
        return None if raw is None else _text(raw)

    async def holders(self, shards: int) -> dict[int, str]:
        """shard -> holding node, for every held shard of `shards` (for ops)."""
        raw = await self.redis.mget([SHARD + str(s) for s in range(shards)])
        return {s: _text(v) for s, v in enumerate(raw) if v is not None}


# ---------------------------------------------------------------- messages between nodes

INBOX = "pocho:cluster:inbox:"  # + node id: pub/sub channel of asks, tells and replies

Handler = Callable[[str, str, Any, bool], Awaitable[Any]]  # (kind, key, msg, wants reply) -> reply


class NotDelivered(Exception):
    """No node is listening on that inbox (PUBLISH reached nobody): the node is gone."""


class Postman:
    """Asks and tells to actors on other nodes, over one Redis pub/sub inbox per node.

    An ask carries a correlation id and this node's inbox; the owner runs it through its
    own actor system (`handler`) and publishes the reply (or the EngineError) back. PUBLISH
    answers how many subscribers got the message, so an ask to a node that is gone fails
    at once with `NotDelivered` instead of waiting for its timeout (the caller looks the
    shard's holder up again and retries). Replies nobody waits for any more are dropped.
    """

    def __init__(self, redis: Redis, node_id: str, handler: Handler) -> None:
        self.redis = redis
        self.node_id = node_id
        self.handler = handler
        self.ready = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.forwarded = 0  # asks and tells sent to other nodes
        self.received = 0  # asks and tells run here for other nodes

    async def run(self) -> None:
        """Listen on this node's inbox until cancelled (a supervisor loop)."""
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(INBOX + self.node_id)
            self.ready.set()
            while True:
                data = await next_message(pubsub)
                if data is not None:
                    self._dispatch(data)
        finally:
            self.ready.clear()
            for task in list(self._tasks):
                task.cancel()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(EngineError("unavailable", "node stopping, retry"))
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, data: bytes) -> None:
        try:
            item = wire.loads(data)
        except Exception:
            log.exception("undecodable cluster message")
            return
        if item[0] == "reply":
            _, corr, ok, value = item
            fut = self._waiting.pop(corr, None)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            return
        task = asyncio.get_running_loop().create_task(self._serve(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, item: list[Any]) -> None:
        _, corr, reply_to, kind, key, msg = item
        self.received += 1
        try:
            result: Any = await self.handler(kind, key, msg, corr is not None)
            reply = ["reply", corr, True, result]
        except EngineError as exc:
            reply = ["reply", corr, False, exc]
        except Exception as exc:
            log.exception("cluster message failed", extra={"kind": kind})
            reply = ["reply", corr, False, EngineError("internal", type(exc).__name__)]
        if corr is not None:
            await self.redis.publish(INBOX + reply_to, wire.dumps(reply))

    async def ask(self, node: str, kind: str, key: str, msg: Any, timeout: float) -> Any:  # noqa: ASYNC109
        """Run `msg` on `node`'s actor `kind:key` and return its reply (or raise its error)."""
        corr = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[corr] = fut
        try:
            payload = wire.dumps(["ask", corr, self.node_id, kind, key, msg])
            if not await self.redis.publish(INBOX + node, payload):
                raise NotDelivered(node)
            self.forwarded += 1
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise EngineError("timeout", "no answer from the owning node in time") from None
        finally:
            self._waiting.pop(corr, None)

    async def tell(self, node: str, kind: str, key: str, msg: Any) -> None:
        """Deliver `msg` to `node`'s actor `kind:key` without waiting for it to run."""
        if not await self.redis.publish(INBOX + node, wire.dumps(["tell", None, self.node_id, kind, key, msg])):
            raise NotDelivered(node)
        self.forwarded += 1
