"""The cluster around one node's runtime (DESIGN "Sharding across nodes", docs/CLUSTER.md).

Every node runs this, alone or with others: one node over a Redis is a cluster of one that
takes every shard. Built here, once: membership and shard leases (`ClusterNode`), asks and
tells to other nodes (`Postman`, `Router` as the actor system's placement), and Socket.IO
rooms spanning nodes (`RoomDirectory` as the Socket.IO manager's bookkeeping, `FrameRelay`
carrying encoded frames). The hooks that move a shard live here too: handing one off
passivates its actors once their writes committed.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from engineio import packet as eio_packet
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from adapters.cluster import Membership, Postman, ShardLeases
from engine.errors import EngineError
from engine.runtime.actor import ActorSystem
from engine.runtime.metrics import REGISTRY
from engine.runtime.ops import NODE_KIND, ActorState, ListActors, PassivateActor
from persistence import shards as shards_db
from pocho_rt.cluster import ClusterNode, ClusterTiming
from pocho_rt.config import Settings
from pocho_rt.routing import Router
from pocho_rt.sockets.rooms import DirectoryManager, FrameRelay, RoomDirectory
from pocho_rt.sockets.server import GuardedServer, emit_local
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.msgpack_parser import Frame

log = logging.getLogger("pocho.cluster")

_OPS_TIMEOUT = 2.0  # seconds another node has to answer an ops question


class ClusterRuntime:
    """This node's cluster: built once in `open_services`, started with the app."""

    def __init__(self, settings: Settings, node_id: str, redis: Redis, pool: asyncpg.Pool) -> None:
        self.node_id = node_id
        address = settings.advertise_address or f"{settings.host}:{settings.port}"
        started = datetime.now(UTC).isoformat(timespec="seconds")
        timing = ClusterTiming(
            shards=settings.cluster_shards,
            node_lease_ms=settings.cluster_node_lease_ms,
            shard_lease_ms=settings.cluster_shard_lease_ms,
            margin_ms=settings.cluster_margin_ms,
            handoffs_per_round=settings.cluster_handoffs_per_round,
        )
        self.node = ClusterNode(
            node_id,
            Membership(redis, node_id, lease_ms=timing.node_lease_ms, address=address, started=started),
            ShardLeases(redis, node_id, lease_ms=timing.shard_lease_ms, margin_ms=timing.margin_ms),
            pool,
            timing,
            on_acquire=self._acquired,
            on_release=self._release,
            on_live=self._live_changed,
        )
        self._on_taken: list[Callable[[], None]] = []
        self.directory = RoomDirectory(redis, node_id)
        self.relay = FrameRelay(redis, node_id, self._deliver)
        self._actors: ActorSystem | None = None
        self._sio: GuardedServer | None = None
        self._router: Router | None = None
        _RUNTIMES.add(self)

    def manager(self) -> DirectoryManager:
        """python-socketio's room bookkeeping, announcing this node's rooms to the others."""
        return DirectoryManager(self.directory)

    def attach(self, actors: ActorSystem, sio: GuardedServer) -> None:
        """Route messages for actors of other nodes' shards, and emits to their rooms."""
        postman = Postman(self.node.membership.redis, self.node_id, self._serve)
        self._router = Router(self.node, postman, actors)
        actors.placement = self._router
        sio.remote = self
        self._actors, self._sio = actors, sio

    @property
    def router(self) -> Router:
        assert self._router is not None, "attach() first"
        return self._router

    # ---------------------------------------------------------------- lifecycle

    async def start(self, supervisor: Supervisor) -> None:
        """Join: the first round takes this node's share before anything is served; then the
        loops (rounds, inbox, outgoing tells, room directory, frames) run under `supervisor`."""
        router = self.router
        try:
            await self.node.round()
        except Exception as exc:  # Redis or PostgreSQL away: the loop keeps trying
            log.warning("first cluster round failed", extra={"error": type(exc).__name__})
        supervisor.loop("cluster", self.node.run)
        supervisor.loop("cluster-inbox", router.postman.run)
        supervisor.loop("cluster-tells", router.run_tells)
        supervisor.loop("cluster-rooms", lambda: self.directory.run(self.live))
        supervisor.loop("cluster-frames", self.relay.run)

    def live(self) -> list[str]:
        """The live nodes as of the last round."""
        return self.node.live

    def alone(self) -> bool:
        """No other live node (known after the first round)."""
        return self.node.live in ([], [self.node_id])

    async def leave(self) -> None:
        """Clean shutdown: hand every shard over (flushing its actors), leave the live set."""
        try:
            await self.node.leave()
            await self.directory.leave()
        except Exception as exc:  # Redis away: the leases run out instead
            log.warning("leaving the cluster failed", extra={"error": type(exc).__name__}, exc_info=True)

    def ready(self) -> bool:
        """Holding every shard this node should hold (for /readyz)."""
        return self.node.settled.is_set()

    # ---------------------------------------------------------------- hooks

    def _live_changed(self, live: list[str]) -> None:
        self.directory.keep_only(live)  # a dead node's rooms: no frames to it, no one "online" there

    def on_taken(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever this node takes shards (deadline sweepers: what the previous
        owner had due is this node's now)."""
        self._on_taken.append(wake)

    async def _acquired(self, shard: int) -> None:
        for wake in self._on_taken:
            wake()

    async def _release(self, shard: int) -> None:
        actors = self._actors
        if actors is None:
            return
        keys = [(kind, key) for kind, key in actors.keys() if self.node.shard(kind, key) == shard]
        await actors.evict(keys, self.node.timing.evict_seconds)

    async def _serve(self, kind: str, actor_id: str, msg: Any, wants_reply: bool) -> Any:
        if kind == NODE_KIND:
            return self._answer_ops(msg)
        return await self.router.serve_remote(kind, actor_id, msg, wants_reply)

    # ---------------------------------------------------------------- ops (any node answers for all)

    def _answer_ops(self, msg: Any) -> Any:
        actors = self.router.system
        if isinstance(msg, ListActors):
            live = actors.live(msg.kind)
            return {"count": len(live), "actors": [[a.kind, a.id] for a in live[: msg.limit]]}
        if isinstance(msg, ActorState):
            actor = actors.get(msg.kind, msg.actor_id)
            return None if actor is None else actor.snapshot()
        if isinstance(msg, PassivateActor):
            if actors.get(msg.kind, msg.actor_id) is None:
                return None
            return actors.passivate(msg.kind, msg.actor_id)
        raise EngineError("invalid", "unknown ops question")

    async def _ask_node(self, node: str, msg: Any) -> Any:
        if node == self.node_id:
            return self._answer_ops(msg)
        return await self.router.postman.ask(node, NODE_KIND, node, msg, _OPS_TIMEOUT)

    async def owner(self, kind: str, actor_id: str) -> str | None:
        """The node holding the actor's shard now."""
        return await self.node.leases.holder(self.node.shard(kind, actor_id))

    async def ask_owner(self, kind: str, actor_id: str, msg: ActorState | PassivateActor) -> tuple[str | None, Any]:
        """(owning node, its answer) for a question about one actor (None, None: no owner)."""
        node = await self.owner(kind, actor_id)
        if node is None:
            return None, None
        return node, await self._ask_node(node, msg)

    async def list_actors(self, kind: str | None, limit: int) -> tuple[int, list[dict[str, str]]]:
        """Live actors on every live node: (total, the first `limit` with their node)."""
        total, out = 0, list[dict[str, str]]()
        for node in await self._live_nodes():
            try:
                answer = await self._ask_node(node, ListActors(kind, limit))
            except Exception as exc:  # a node dying: list what the others have
                log.warning("a node did not list its actors", extra={"node": node, "error": type(exc).__name__})
                continue
            total += answer["count"]
            out.extend({"kind": k, "id": i, "node": node} for k, i in answer["actors"])
        return total, out[:limit]

    async def _live_nodes(self) -> list[str]:
        return [n.node_id for n in await self.node.membership.nodes()]

    async def nodes(self) -> list[dict[str, Any]]:
        """Every live node: id, address, started, last heartbeat, shards held, live actors."""
        holders = await self.node.leases.holders(self.node.timing.shards)
        out = []
        for info in await self.node.membership.nodes():
            try:
                actors = (await self._ask_node(info.node_id, ListActors(None, 0)))["count"]
            except Exception:  # that node is not answering: say so, list the rest
                actors = None
            out.append(
                {
                    "id": info.node_id,
                    "address": info.address,
                    "started": info.started,
                    "lastHeartbeat": info.heartbeat,
                    "shards": sum(1 for h in holders.values() if h == info.node_id),
                    "liveActors": actors,
                }
            )
        return out

    async def shards(self) -> list[dict[str, Any]]:
        """Every shard: its lease holder now (None while it moves) and its last fencing epoch."""
        holders = await self.node.leases.holders(self.node.timing.shards)
        epochs = await shards_db.owners(self.node.pool)
        return [
            {"shard": s, "node": holders.get(s), "epoch": epochs[s][1] if s in epochs else None}
            for s in range(self.node.timing.shards)
        ]

    # ---------------------------------------------------------------- rooms (sockets.server.RemoteRooms)

    def forward(self, namespace: str, to: str | list[str], text: str) -> None:
        """An emit's frame, for the other nodes with members of its rooms."""
        for room in [to] if isinstance(to, str) else to:
            for node in self.directory.nodes_for(namespace, room) or ():
                self.relay.send(node, namespace, room, text)

    async def _deliver(self, namespace: str, room: str, text: str) -> None:
        if self._sio is not None:
            await emit_local(self._sio, Frame(eio_packet.MESSAGE, text), room, namespace)


# ---------------------------------------------------------------- metrics

_RUNTIMES: weakref.WeakSet[ClusterRuntime] = weakref.WeakSet()


class _ClusterMetrics(Collector):
    """Counters the hot paths keep as plain integers, read when Prometheus scrapes."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        runtimes = [r for r in list(_RUNTIMES) if r._router is not None]
        messages = CounterMetricFamily(
            "pocho_cluster_messages", "Asks and tells crossing nodes, by direction", labels=["direction"]
        )
        messages.add_metric(["sent"], sum(r.router.postman.forwarded for r in runtimes))
        messages.add_metric(["received"], sum(r.router.postman.received for r in runtimes))
        messages.add_metric(["dropped_tells"], sum(r.router.dropped_tells for r in runtimes))
        yield messages
        frames = CounterMetricFamily(
            "pocho_cluster_frames", "Socket.IO frames relayed for rooms with members on other nodes", labels=["outcome"]
        )
        frames.add_metric(["sent"], sum(r.relay.sent for r in runtimes))
        frames.add_metric(["received"], sum(r.relay.received for r in runtimes))
        frames.add_metric(["dropped"], sum(r.relay.dropped for r in runtimes))
        yield frames
        yield GaugeMetricFamily(
            "pocho_cluster_shards_held", "Shards this node holds", value=sum(len(r.node.epochs) for r in runtimes)
        )
        yield GaugeMetricFamily(
            "pocho_cluster_live_nodes",
            "Live nodes this node sees",
            value=max((len(r.node.live) for r in runtimes), default=0),
        )


REGISTRY.register(_ClusterMetrics())
