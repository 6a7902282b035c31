"""This node's part in the cluster: which shards it holds, under which fencing epoch, and
moving them as nodes come and go (DESIGN "Sharding across nodes").

One loop (`run`, owned by the supervisor) does everything in rounds of `tick` seconds:
renew this node's membership and read the live set; renew the shard leases held and drop
the ones lost; take free shards this node should own (lease first, then the next epoch in
PostgreSQL, then `on_acquire` re-arms their deadlines); and hand off, a few per round, the
shards another live node should own (`on_release` flushes and passivates their actors
before the lease is released). A node that cannot renew stops serving a shard at its local
deadline, before Redis can give the lease to anyone else.

Routing asks and tells to the holder (the Postman), fencing write-behind transactions with
`epoch_of`, and the cross-node Socket.IO rooms are wired by the runtime around this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter
from redis.exceptions import RedisError

from adapters.cluster import Membership, ShardLeases
from adapters.pubsub import raise_if_cancelled
from engine.errors import EngineError
from engine.runtime.metrics import REGISTRY
from engine.runtime.placement import shard_of, shards_for
from persistence import shards as shards_db

log = logging.getLogger("pocho.cluster")

SHARD_MOVES = Counter(
    "pocho_cluster_shard_moves_total", "Shards taken or given up by this node", ["change"], registry=REGISTRY
)
FENCED_WRITES = Counter(
    "pocho_cluster_fenced_writes_total", "Writes refused because another node took their shard", registry=REGISTRY
)
RENEW_FAILURES = Counter(
    "pocho_cluster_renew_failures_total", "Rounds in which Redis could not renew this node's leases", registry=REGISTRY
)

ShardHook = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClusterTiming:
    shards: int = 256
    node_lease_ms: int = 6000
    shard_lease_ms: int = 6000
    margin_ms: int = 1500  # stop serving this long before a shard lease could pass elsewhere
    handoffs_per_round: int = 64  # gradual rebalancing: shards handed off per round at most

    @property
    def evict_seconds(self) -> float:
        """How long a shard handed off waits for its actors' writes: half a round."""
        return self.tick / 2

    @property
    def tick(self) -> float:
        """Seconds between rounds: a third of the shorter lease, so two rounds can fail
        before anything lapses."""
        return min(self.node_lease_ms, self.shard_lease_ms) / 3000.0


async def _nothing(shard: int) -> None:
    return None


class ClusterNode:
    def __init__(
        self,
        node_id: str,
        membership: Membership,
        leases: ShardLeases,
        pool: asyncpg.Pool,
        timing: ClusterTiming,
        *,
        on_acquire: ShardHook = _nothing,
        on_release: ShardHook = _nothing,
        on_live: Callable[[list[str]], None] = lambda live: None,
    ) -> None:
        self.node_id = node_id
        self.membership = membership
        self.leases = leases
        self.pool = pool
        self.timing = timing
        self.on_acquire = on_acquire
        self.on_release = on_release
        self.on_live = on_live  # told the live set every round (the room directory forgets the dead)
        self._turn = asyncio.Lock()  # a round and a clean leave never interleave
        self.epochs: dict[int, int] = {}  # held shard -> fencing epoch taken for it
        self.live: list[str] = []
        self.settled = asyncio.Event()  # set once this node holds every shard it should
        self._fenced: set[int] = set()  # shards a stale-epoch write just told us we lost
        self.draining: set[int] = set()  # being handed off: writes still fenced, no new messages
        self.leaving = False

    # ---------------------------------------------------------------- what the runtime asks

    def shard(self, kind: str, key: str) -> int:
        return shard_of(kind, key, self.timing.shards)

    def serves(self, shard: int) -> bool:
        """Whether this node may run actors of `shard` now (lease valid, epoch taken)."""
        return shard in self.epochs and self.leases.valid(shard)

    def accepts(self, shard: int) -> bool:
        """Whether new messages for `shard`'s actors may start here (not while handing it off)."""
        return shard not in self.draining and self.serves(shard)

    def epoch_of(self, shard: int) -> int | None:
        """The epoch every write of `shard` is fenced with (None: not ours, write nothing)."""
        return self.epochs.get(shard) if self.serves(shard) else None

    def held(self) -> list[int]:
        return sorted(self.epochs)

    # ---------------------------------------------------------------- fencing (persistence.shards.Fence)

    def rows(self, kind: str, key: str) -> list[shards_db.Row]:
        shard = self.shard(kind, key)
        epoch = self.epoch_of(shard)
        if epoch is None:
            raise EngineError("unavailable", "that item is moving between servers, retry")
        return [(shards_db.FENCE, (shard, epoch))]

    def watch(self, commit: asyncio.Future[None]) -> None:
        commit.add_done_callback(self._check_fenced)

    def _check_fenced(self, commit: asyncio.Future[None]) -> None:
        if commit.cancelled():
            return
        shard = shards_db.stale_shard(commit.exception())
        if shard is not None and shard in self.epochs:
            # Stop serving at once; the next round passivates its actors and forgets it.
            self.epochs.pop(shard, None)
            self.leases.valid_until.pop(shard, None)
            self._fenced.add(shard)
            FENCED_WRITES.inc()
            log.warning("write fenced: another node owns the shard now", extra={"shard": shard})

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.round()
            except (OSError, RedisError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                RENEW_FAILURES.inc()
                log.warning("cluster round failed", extra={"error": type(exc).__name__})
                await self._drop_lapsed()
            raise_if_cancelled()  # redis-py can swallow our owner's cancel (adapters/pubsub.py)
            await asyncio.sleep(max(0.0, self.timing.tick - (time.monotonic() - started)))

    async def round(self) -> None:
        """One round of membership, renewal, takes and handoffs."""
        async with self._turn:
            if not self.leaving:  # a node that left must not heartbeat itself back into the live set
                await self._round()

    async def _round(self) -> None:
        self.live = await self.membership.heartbeat()
        self.on_live(self.live)
        fenced, self._fenced = self._fenced, set()
        SHARD_MOVES.labels("fenced").inc(len(fenced))
        # Shards move concurrently: a round must end well inside the lease it renews.
        await asyncio.gather(*(self.on_release(shard) for shard in sorted(fenced)))
        lost = await self.leases.renew(list(self.epochs))
        await asyncio.gather(*(self._lost(shard, "lost") for shard in sorted(lost)))
        if self.leaving:
            return
        wanted = shards_for(self.node_id, self.live, self.timing.shards)
        await self._take(sorted(wanted - set(self.epochs)))
        await self.hand_off(sorted(set(self.epochs) - wanted)[: self.timing.handoffs_per_round])
        if wanted <= set(self.epochs):
            self.settled.set()
        else:
            self.settled.clear()

    async def _take(self, shards: list[int]) -> None:
        """Take the free ones of `shards`: leases first, then new epochs, then re-arm.
        Shards another node still holds stay with it until it hands them off or its lease
        runs out."""
        got = sorted(await self.leases.acquire_many(shards))
        if not got:
            return
        try:
            epochs = await shards_db.take_many(self.pool, got, self.node_id)
        except BaseException:
            await self.leases.release_many(got)
            raise
        await self.leases.release_many([s for s in got if s not in epochs])  # locked: next round
        self.epochs.update(epochs)
        SHARD_MOVES.labels("taken").inc(len(epochs))
        for shard in epochs:
            await self.on_acquire(shard)

    async def hand_off(self, shards: list[int]) -> None:
        """Flush and passivate the shards' actors, then release the shards for their rightful
        owners (together: a round must end well inside the lease it renews)."""
        if not shards:
            return
        self.draining.update(shards)
        try:
            await asyncio.gather(*(self.on_release(shard) for shard in shards))
        finally:
            for shard in shards:
                self.epochs.pop(shard, None)
            self.draining.difference_update(shards)
        await self.leases.release_many(shards)
        SHARD_MOVES.labels("handed_off").inc(len(shards))

    async def _lost(self, shard: int, why: str) -> None:
        """A shard this node may no longer serve: its actors go without a flush (their writes
        would be fenced anyway)."""
        self.epochs.pop(shard, None)
        SHARD_MOVES.labels(why).inc()
        log.warning("shard lost", extra={"shard": shard, "reason": why})
        await self.on_release(shard)

    async def _drop_lapsed(self) -> None:
        """Redis unreachable: forget shards whose serving deadline passed (the runtime sees
        `serves()` false from that moment anyway) and drop their actors, whose state another
        node may change meanwhile."""
        lapsed = [s for s in self.epochs if not self.leases.valid(s)]
        for shard in lapsed:
            self.epochs.pop(shard, None)
            SHARD_MOVES.labels("lapsed").inc()
        await asyncio.gather(*(self.on_release(shard) for shard in lapsed))

    async def leave(self) -> None:
        """Clean shutdown: hand every shard off, then drop out of the live set."""
        async with self._turn:  # after a round in flight, which may still take shards
            self.leaving = True
            await self.hand_off(self.held())
            await self.membership.leave()
