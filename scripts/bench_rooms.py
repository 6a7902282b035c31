"""Rooms across nodes: python-socketio's Redis manager against the project's room directory and
frame relay (`pocho_rt/sockets/rooms.py`), per emit, in one run on one Redis.

Two "nodes" live in this process, each with its own Redis connections, so the figure is the
whole cost of an emit crossing nodes: the sender's work, Redis, and the receiver's decoding.
Cases: a room with a member on the other node (the relay sends there), and a room with no
member elsewhere (the Redis manager publishes anyway; the directory sends nothing).

    python -m scripts.bench_rooms [--emits 20000] [--redis redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import socketio
from redis.asyncio import Redis

from pocho_rt.sockets.rooms import FrameRelay, RoomDirectory

NS, ROOM = "/customer", "request:bench"
PAYLOAD = {"offer": {"id": "7b0c1d7e-0000-4000-8000-000000000000", "priceKobo": 250_000, "round": 3}}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _measure(name: str, emits: int, emit: Callable[[int], Awaitable[None]], received: Callable[[], int]) -> None:
    started, cpu = time.perf_counter(), _cpu()
    for i in range(emits):
        await emit(i)
    sent = time.perf_counter() - started
    while received() < emits:  # noqa: ASYNC110 - the other "node" gives no event: poll its counter
        await asyncio.sleep(0.001)
    total, cpu = time.perf_counter() - started, _cpu() - cpu
    print(
        f"{name:<66} sender {sent / emits * 1e6:7.1f} us/emit   until received {total / emits * 1e6:7.1f} us/emit"
        f"   process CPU {cpu / emits * 1e6:7.1f} us/emit"
    )


async def _redis_manager(url: str, emits: int, remote_member: bool) -> None:
    got = 0

    class _Counting(socketio.AsyncRedisManager):  # type: ignore[misc]
        async def _handle_emit(self, message: dict[str, Any]) -> None:
            nonlocal got
            got += 1
            await super()._handle_emit(message)

    servers = []
    for _ in range(2):
        mgr = _Counting(url, channel="pocho-bench-rooms")
        srv = socketio.AsyncServer(client_manager=mgr, async_mode="aiohttp")
        mgr.initialize()
        servers.append((srv, mgr))
    await asyncio.sleep(0.5)  # both subscribed (the manager gives no ready signal)
    sender = servers[0][1]
    # Without a remote member the other node still receives and decodes every emit; count it
    # either way (python-socketio has no notion of where a room's members are).
    base = got
    await _measure(
        f"redis manager, room {'with' if remote_member else 'without'} a remote member",
        emits,
        lambda i: sender.emit("offer:updated", PAYLOAD, namespace=NS, room=ROOM),
        lambda: got - base - emits,  # the sender's own local handling counts once per emit
    )
    for _, mgr in servers:
        mgr.thread.cancel()


async def _relay(url: str, emits: int, remote_member: bool, per_turn: int) -> None:
    got = 0

    async def deliver(namespace: str, room: str, text: str) -> None:
        nonlocal got
        got += 1

    ra, rb = Redis.from_url(url), Redis.from_url(url)
    a_dir, b_dir = RoomDirectory(ra, "a"), RoomDirectory(rb, "b")
    a, b = FrameRelay(ra, "a", deliver), FrameRelay(rb, "b", deliver)
    tasks = [asyncio.ensure_future(t) for t in (a.run(), b.run(), a_dir.run(["b"]), b_dir.run(["a"]))]
    await asyncio.gather(a.ready.wait(), b.ready.wait(), a_dir.ready.wait(), b_dir.ready.wait())
    if remote_member:
        b_dir.joined(NS, ROOM)
        while a_dir.nodes_for(NS, ROOM) is None:  # noqa: ASYNC110 - the announcement has no local event
            await asyncio.sleep(0.001)

    async def emit(i: int) -> None:
        text = f'2{NS},["offer:updated",{orjson.dumps(PAYLOAD).decode()}]'  # encoded once, as emit_frame does
        for node in a_dir.nodes_for(NS, ROOM) or ():
            a.send(node, NS, ROOM, text)
        if i % per_turn == per_turn - 1:
            await asyncio.sleep(0)  # let the relay's loop run: `per_turn` emits share one publish

    await _measure(
        f"relay, {per_turn} emit(s) per loop turn, room {'with' if remote_member else 'without'} a remote member",
        emits,
        emit,
        lambda: got if remote_member else emits,
    )
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await ra.aclose()
    await rb.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--emits", type=int, default=20_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = ap.parse_args()
    for remote in (True, False):
        await _redis_manager(args.redis, args.emits, remote)
        for per_turn in (1, 64) if remote else (1,):
            await _relay(args.redis, args.emits, remote, per_turn)


if __name__ == "__main__":
    asyncio.run(main())
