"""Rooms that span nodes (pocho_rt/sockets/rooms.py) over a real Redis: a node learns which
other nodes have members of a room when the first member joins there and forgets it when
the last leaves, a node starting later loads the rooms already announced, and a dead node's
rooms are forgotten."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pocho_rt.sockets.rooms import DirectoryManager, FrameRelay, RoomDirectory
from tests.helpers import eventually


class Node:
    def __init__(self, redis: Redis, node_id: str, live: list[str]) -> None:
        self.directory = RoomDirectory(redis, node_id)
        self.manager = DirectoryManager(self.directory)
        self.task = asyncio.ensure_future(self.directory.run(live))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def started(redis: Redis) -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    yield nodes
    for n in nodes:
        await n.stop()


async def start(redis: Redis, nodes: list[Node], node_id: str, live: list[str]) -> Node:
    node = Node(redis, node_id, live)
    nodes.append(node)
    await node.directory.ready.wait()
    return node


def join(node: Node, sid: str, room: str, ns: str = "/customer") -> None:
    m = node.manager
    m.rooms.setdefault(ns, {}).setdefault(None, {})[sid] = f"eio-{sid}"  # connected to the namespace
    m.basic_enter_room(sid, ns, room, eio_sid=f"eio-{sid}")


async def test_first_join_and_last_leave_are_announced(redis: Redis, started: list[Node]) -> None:
    a = await start(redis, started, "a", [])
    b = await start(redis, started, "b", ["a"])
    join(a, "s1", "order:1")
    join(a, "s2", "order:1")  # a second member: no new announcement needed
    await eventually(lambda: b.directory.nodes_for("/customer", "order:1") == {"a"}, what="a's room")
    assert a.directory.nodes_for("/customer", "order:1") is None  # a's own rooms are local
    assert b.directory.nodes_for("/vendor", "order:1") is None  # rooms are per namespace
    a.manager.basic_leave_room("s1", "/customer", "order:1")
    join(a, "s3", "order:2")  # a later change: once it arrives, the leave above has too
    await eventually(lambda: b.directory.nodes_for("/customer", "order:2") == {"a"}, what="a's second room")
    assert b.directory.nodes_for("/customer", "order:1") == {"a"}  # s2 is still there
    a.manager.basic_disconnect("s2", "/customer")
    await eventually(lambda: not b.directory.nodes_for("/customer", "order:1"), what="a's last member to leave")


async def test_a_node_starting_later_loads_what_was_announced(redis: Redis, started: list[Node]) -> None:
    a = await start(redis, started, "a", [])
    join(a, "s1", "user:7")
    join(a, "s1", "s1")  # its own sid room: never announced
    await eventually(lambda: _members(redis, "a"), what="a's room set")
    c = await start(redis, started, "c", ["a"])
    assert c.directory.nodes_for("/customer", "user:7") == {"a"}
    assert c.directory.nodes_for("/customer", "s1") is None


async def _members(redis: Redis, node: str) -> bool:
    return bool(await redis.smembers(f"pocho:cluster:rooms:{node}"))


async def test_a_dead_nodes_rooms_are_forgotten(redis: Redis, started: list[Node]) -> None:
    a = await start(redis, started, "a", [])
    b = await start(redis, started, "b", ["a"])
    join(a, "s1", "order:9")
    await eventually(lambda: b.directory.nodes_for("/customer", "order:9") == {"a"}, what="a's room")
    b.directory.keep_only(["b"])  # the membership no longer lists a
    assert b.directory.nodes_for("/customer", "order:9") is None


async def test_frames_reach_the_other_node_in_order_in_batches(redis: Redis) -> None:
    got: list[tuple[str, str, str]] = []
    b_relay = FrameRelay(redis, "b", lambda ns, room, data: _record(got, ns, room, data))
    a_relay = FrameRelay(redis, "a", lambda ns, room, data: _record([], ns, room, data))
    tasks = [asyncio.ensure_future(a_relay.run()), asyncio.ensure_future(b_relay.run())]
    try:
        await a_relay.ready.wait()
        await b_relay.ready.wait()
        for i in range(200):
            a_relay.send("b", "/customer", f"order:{i % 3}", f'2/customer,["rider:location",{{"i":{i}}}]')
        await eventually(lambda: len(got) == 200, what="200 frames on b")
        assert got[0] == ("/customer", "order:0", '2/customer,["rider:location",{"i":0}]')
        assert [int(d.split('"i":')[1].rstrip("}]")) for _, _, d in got] == list(range(200))
        assert a_relay.sent == 200 and b_relay.received == 200
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Stopped loops leave no task behind (a pending one would be destroyed later, logging).
    assert [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "Event.wait"] == []


async def _record(into: list[tuple[str, str, str]], ns: str, room: str, data: str) -> None:
    into.append((ns, room, data))


async def test_a_room_loop_always_ends_when_its_owner_cancels_it(redis_url: str, clean: None) -> None:
    # redis-py (8.1) can swallow a cancellation that lands inside a pub/sub read or a pipeline;
    # before adapters/pubsub.py, about one loop in six here never ended and held up shutdown.
    from pocho_rt.config import Settings
    from pocho_rt.redis_client import connect_redis

    r = connect_redis(redis_url, Settings())
    try:
        never_ended = 0
        for i in range(30):
            directory = RoomDirectory(r, f"n{i}")
            task = asyncio.ensure_future(directory.run([]))
            await directory.ready.wait()
            if i % 2:
                directory.joined("/customer", "request:1")  # a pipeline in flight as the cancel lands
            await asyncio.sleep(0.01 * (i % 3))  # not a wait for anything: varies where the cancel lands
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)  # a hang guard: ending is the outcome
            never_ended += not done
        assert never_ended == 0
    finally:
        await r.aclose()


async def test_a_failed_send_ends_the_loop_with_its_error_not_a_cancel(redis: Redis) -> None:
    # The supervisor restarts a loop that fails; one that ends cancelled it treats as stopped
    # (and a pending cancel left on its task would end every restart at once).
    from pocho_rt.sockets.rooms import _channel_loop

    wake, ready = asyncio.Event(), asyncio.Event()

    async def send() -> None:
        raise RuntimeError("publish refused")

    async def on_message(data: bytes) -> None:
        return None

    task = asyncio.ensure_future(_channel_loop(redis, "pocho:test:channel", on_message, wake, send, ready))
    await ready.wait()
    wake.set()
    with pytest.raises(RuntimeError, match="publish refused"):
        await asyncio.wait_for(task, 10)
    assert not task.cancelled() and task.cancelling() == 0
