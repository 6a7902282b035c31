"""Socket.IO rooms that span nodes, paying for it only when a room has members elsewhere.

python-socketio's Redis manager publishes every emit to one channel that every node
decodes (DESIGN: ~275 us per emit, serially). Here each node tells the others which rooms
it has members in, once per room (first member joins, last leaves), and keeps the others'
answers in memory; an emit is delivered locally as before and sent to exactly the nodes
that have members of that room, as the already-encoded frame. A room nobody elsewhere is in
costs one dict lookup.

Each node keeps its own room set in Redis (`pocho:cluster:rooms:<node>`, for nodes that
start later) and announces changes on one channel. The set is dropped when the node leaves
or its membership lease runs out (the directory forgets a node the membership no longer
lists). A member that joined a room on another node a moment ago may miss an emit sent
before the announcement arrived: clients recover with `sinceSeq` replay, as after any
reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
import socketio
from redis.asyncio import Redis

from adapters.pubsub import next_message, raise_if_cancelled

log = logging.getLogger("pocho.rooms")

ROOMS_CHANNEL = "pocho:cluster:rooms"
ROOMS_OF = "pocho:cluster:rooms:"  # + node id: set of "namespace|room"
_SEP = "|"


def _key(namespace: str, room: str) -> str:
    return f"{namespace}{_SEP}{room}"


async def _channel_loop(
    redis: Redis,
    channel: str,
    on_message: Callable[[bytes], Awaitable[None]],
    wake: asyncio.Event,
    send: Callable[[], Awaitable[None]],
    ready: asyncio.Event,
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Subscribe to `channel` and hand each message to `on_message`; whenever `wake` is set,
    `send` what is queued. Ends (for the supervisor to restart it) if either side fails.

    Both halves check for a cancellation redis-py swallowed (adapters/pubsub.py)."""
    pubsub = redis.pubsub()
    sender: asyncio.Task[None] | None = None
    try:
        await pubsub.subscribe(channel)
        if prepare is not None:
            await prepare()
        ready.set()

        async def _send_loop() -> None:
            while True:
                await wake.wait()
                wake.clear()
                await send()
                raise_if_cancelled()

        sender = asyncio.ensure_future(_send_loop())
        while True:
            if sender.done():
                sender.result()  # the sender failed: end with its error, for the supervisor to restart
            data = await next_message(pubsub)  # returns at least every POLL_SECONDS
            if data is not None:
                await on_message(data)
    finally:
        ready.clear()
        if sender is not None and not sender.done():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        await pubsub.aclose()  # type: ignore[no-untyped-call]


class RoomDirectory:
    """Which other nodes have members of which rooms."""

    def __init__(self, redis: Redis, node_id: str) -> None:
        self.redis = redis
        self.node_id = node_id
        self.remote: dict[str, set[str]] = defaultdict(set)  # "ns|room" -> other nodes with members
        self._by_node: dict[str, set[str]] = defaultdict(set)  # other node -> its "ns|room" keys
        self._pending: list[tuple[str, str]] = []  # ("+"|"-", key) not yet announced
        self._local: set[str] = set()  # this node's rooms with members, as announced or pending
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()

    # ---------------------------------------------------------------- local changes

    def joined(self, namespace: str, room: str) -> None:
        """The first member of `room` on this node."""
        self._local.add(_key(namespace, room))
        self._pending.append(("+", _key(namespace, room)))
        self._wake.set()

    def left(self, namespace: str, room: str) -> None:
        """The last member of `room` on this node went."""
        self._local.discard(_key(namespace, room))
        self._pending.append(("-", _key(namespace, room)))
        self._wake.set()

    def nodes_for(self, namespace: str, room: str) -> set[str] | None:
        """Other nodes with members of `room` (None or empty: none)."""
        return self.remote.get(_key(namespace, room))

    # ---------------------------------------------------------------- others' changes

    def _apply(self, node: str, sign: str, key: str) -> None:
        if node == self.node_id:
            return
        if sign == "=":  # that node (re)started its loop: what follows is all it has
            for gone in self._by_node.pop(node, set()):
                self._apply_gone(node, gone)
        elif sign == "+":
            self.remote[key].add(node)
            self._by_node[node].add(key)
        else:
            nodes = self.remote.get(key)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del self.remote[key]
            self._by_node[node].discard(key)

    def keep_only(self, live: Iterable[str]) -> None:
        """Forget the rooms of nodes no longer live."""
        alive = set(live)
        for node in [n for n in self._by_node if n not in alive]:
            for key in self._by_node.pop(node):
                self._apply_gone(node, key)

    def _apply_gone(self, node: str, key: str) -> None:
        nodes = self.remote.get(key)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self.remote[key]

    async def load(self, nodes: Iterable[str]) -> None:
        """Read the room sets of the given (live) nodes: done once at start, after subscribing."""
        for node in nodes:
            if node == self.node_id:
                continue
            for raw in await self.redis.smembers(ROOMS_OF + node):
                self._apply(node, "+", raw.decode() if isinstance(raw, bytes) else str(raw))

    # ---------------------------------------------------------------- the loop

    async def run(self, live: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
        """Announce this node's changes and apply everyone else's (a supervisor loop)."""

        async def _prepare() -> None:
            # All this node has, announced afresh: a restart of this loop may have lost changes.
            self._pending = []
            rooms = sorted(self._local)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(ROOMS_OF + self.node_id)
                if rooms:
                    pipe.sadd(ROOMS_OF + self.node_id, *rooms)
                pipe.publish(ROOMS_CHANNEL, "\n".join([self.node_id, "=", *("+" + k for k in rooms)]))
                await pipe.execute()
            await self.load(live() if callable(live) else live)

        await _channel_loop(
            self.redis, ROOMS_CHANNEL, self._on_message, self._wake, self._announce, self.ready, _prepare
        )

    async def _on_message(self, data: bytes) -> None:
        node, _, body = data.decode().partition("\n")
        for line in body.split("\n"):
            if line:
                self._apply(node, line[0], line[1:])

    async def _announce(self) -> None:
        changes, self._pending = self._pending, []
        if not changes:
            return
        adds = [k for s, k in changes if s == "+"]
        removes = [k for s, k in changes if s == "-"]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if adds:
                    pipe.sadd(ROOMS_OF + self.node_id, *adds)
                if removes:
                    pipe.srem(ROOMS_OF + self.node_id, *removes)
                pipe.publish(ROOMS_CHANNEL, self.node_id + "\n" + "\n".join(s + k for s, k in changes))
                await pipe.execute()
        except BaseException:
            self._pending[:0] = changes  # not lost: the restarted loop announces everything anyway
            raise

    async def leave(self) -> None:
        await self.redis.delete(ROOMS_OF + self.node_id)


class DirectoryManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's room bookkeeping, telling the directory when a room appears on this
    node or disappears from it (sid rooms are private to their socket and never announced)."""

    def __init__(self, directory: RoomDirectory) -> None:
        super().__init__()
        self.directory = directory

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        fresh = room is not None and room != sid and room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if fresh:
            self.directory.joined(namespace, room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        existed = room is not None and room != sid and room in self.rooms.get(namespace, {})
        super().basic_leave_room(sid, namespace, room)
        if existed and room not in self.rooms.get(namespace, {}):
            self.directory.left(namespace, room)


# ---------------------------------------------------------------- frames for other nodes

FRAMES = "pocho:cluster:frames:"  # + node id: pub/sub channel of encoded frames for its rooms
MAX_BUFFERED_FRAMES = 100_000  # per process: frames waiting to leave (past it: dropped, counted)

Deliver = Callable[[str, str, str], Awaitable[None]]  # (namespace, room, engine.io message text)


class FrameRelay:
    """Encoded frames to the other nodes that have members of a room, batched per node.

    An emit queues the frame text per target node and returns; one loop publishes each
    node's queue as a single message (in emit order), so a burst of emits costs one Redis
    round trip per node, not one per emit. The receiving node delivers each frame to its
    local members of the room, in order.
    """

    def __init__(self, redis: Redis, node_id: str, deliver: Deliver) -> None:
        self.redis = redis
        self.node_id = node_id
        self.deliver = deliver
        self._out: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self._buffered = 0
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self.sent = 0
        self.received = 0
        self.dropped = 0

    def send(self, node: str, namespace: str, room: str, data: str) -> None:
        if self._buffered >= MAX_BUFFERED_FRAMES:
            self.dropped += 1
            return
        self._out[node].append((namespace, room, data))
        self._buffered += 1
        self._wake.set()

    async def run(self) -> None:
        """Publish queued frames and deliver incoming ones (a supervisor loop)."""
        await _channel_loop(self.redis, FRAMES + self.node_id, self._on_message, self._wake, self._flush, self.ready)

    async def _flush(self) -> None:
        out, self._out, self._buffered = self._out, defaultdict(list), 0
        if not out:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for node, frames in out.items():
                pipe.publish(FRAMES + node, orjson.dumps(frames))
                self.sent += len(frames)
            await pipe.execute()

    async def _on_message(self, data: bytes) -> None:
        try:
            frames = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("undecodable frames from another node")
            return
        for namespace, room, text in frames:
            self.received += 1
            await self.deliver(namespace, room, text)
