"""The one-frame dispatch of namespace classes (`GuardedServer._handle_event`, issue 12): acks on
the wire exactly as upstream writes them, for every kind of handler answer, on JSON and on
MessagePack sessions; an event on a namespace the socket has not joined is not handled. The
`http` client fixture is tests/integration/transport_support.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest
import socketio
from aiohttp import web

from pocho_rt.config import Settings
from pocho_rt.sockets.server import GuardedServer, create_sio
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.conformance import ENGINE
from tests.integration.transport_support import next_frame, serve, sio_socket


class _Answers(socketio.AsyncNamespace):  # type: ignore[misc]
    """Each event answers with another kind of value; `seen` records what was handled."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.seen: list[str] = []

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        self.seen.append(event)
        return {
            "none": None,
            "dict": {"ok": True, "n": 1},
            "tuple": (1, "two", [3]),
            "bytes": {"raw": b"\x00\x01"},
        }[event]


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, _Answers]]:
    supervisor = Supervisor()
    sio: GuardedServer = create_sio(Settings(rate_limit_enabled=False), supervisor)
    answers = _Answers("/a")
    sio.register_namespace(answers)
    app = web.Application()
    sio.attach(app)
    app[ENGINE] = sio.eio
    try:
        async for url in serve(app):
            yield f"{url}/socket.io/", answers
    finally:
        await supervisor.stop()


async def test_acks_of_every_answer_kind_as_upstream_writes_them(
    served: tuple[str, _Answers], http: aiohttp.ClientSession
) -> None:
    base, answers = served
    ws, recv = await sio_socket(http, base)
    async with ws:
        await ws.send_str('42/a,1["none"]')  # not joined yet: not handled, no ack
        await ws.send_str("40/a,")
        assert (await recv()).startswith("40/a,")
        for n, event, ack in (
            (2, "none", "43/a,2[]"),
            (3, "dict", '43/a,3[{"ok":true,"n":1}]'),
            (4, "tuple", '43/a,4[1,"two",[3]]'),
        ):
            await ws.send_str(f'42/a,{n}["{event}"]')
            assert await recv() == ack
        await ws.send_str('42/a,5["bytes"]')  # bytes: upstream's binary ACK with an attachment
        assert await recv() == '461-/a,5[{"raw":{"_placeholder":true,"num":0}}]'
        assert await recv() == b"\x00\x01"
    assert answers.seen == ["none", "dict", "tuple", "bytes"]  # the first "none" was never handled


async def test_a_messagepack_sessions_acks_are_packed_from_the_values(
    served: tuple[str, _Answers], http: aiohttp.ClientSession
) -> None:
    base, _ = served
    ws, recv = await sio_socket(http, base)
    async with ws:
        await ws.send_bytes(msgpack.packb({"type": 0, "nsp": "/a"}))
        assert msgpack.unpackb(await recv())["type"] == 0
        for n, (event, data) in enumerate(
            (("none", []), ("tuple", [1, "two", [3]]), ("bytes", [{"raw": b"\x00\x01"}])), start=1
        ):
            await ws.send_bytes(msgpack.packb({"type": 2, "nsp": "/a", "data": [event], "id": n}))
            assert msgpack.unpackb(await next_frame(ws)) == {"type": 3, "data": data, "nsp": "/a", "id": n}
