"""socket.io-msgpack-parser sessions beside JSON ones (issue 13, target 3), with raw websocket
and polling clients against `pocho-rt conformance`'s Socket.IO server: every packet of a
MessagePack session is one binary Engine.IO message, `{type, data, nsp, id?}`. The real
JavaScript client is driven by tests/e2e/test_js_clients.py."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import msgpack

from pocho_rt.config import Settings
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.conformance import SIO, socketio_app
from tests.integration.transport_support import (
    Served,
    closed_by_server,
    http_get,
    http_post,
    next_frame,
    open_polling,
    serve,
    sio_socket,
)


def mp(**packet: Any) -> bytes:
    return msgpack.packb(packet)


async def connected(http: aiohttp.ClientSession, base: str, namespace: str = "/custom") -> Any:
    """A websocket whose session spoke MessagePack first, connected to `namespace`; the CONNECT
    answer and the suite server's `auth` emit are read and checked."""
    ws, _ = await sio_socket(http, base)
    await ws.send_bytes(mp(type=0, nsp=namespace, data={"token": "abc"}))
    answer = msgpack.unpackb(await next_frame(ws))
    assert set(answer) == {"type", "data", "nsp"} and answer["type"] == 0 and answer["nsp"] == namespace
    assert set(answer["data"]) == {"sid"}
    assert msgpack.unpackb(await next_frame(ws)) == {"type": 2, "data": ["auth", {"token": "abc"}], "nsp": namespace}
    return ws


async def test_events_acks_and_bytes_travel_as_messagepack(sio: Served, http: aiohttp.ClientSession) -> None:
    ws = await connected(http, sio[0])
    async with ws:
        values = [1, "é", None, {"a": [True, 2.5]}, b"\x00\x01"]
        await ws.send_bytes(mp(type=2, nsp="/custom", data=["message", *values]))
        # python-socketio's manager encodes a packet with bytes as a text header and attachments:
        # the session gathers them into one MessagePack packet
        assert msgpack.unpackb(await next_frame(ws)) == {"type": 2, "data": ["message-back", *values], "nsp": "/custom"}
        await ws.send_bytes(mp(type=2, nsp="/custom", data=["message-with-ack", *values], id=41))
        assert msgpack.unpackb(await next_frame(ws)) == {"type": 3, "data": values, "nsp": "/custom", "id": 41}


async def test_an_unknown_namespace_is_refused_and_leaving_one_is_heard(
    sio: Served, http: aiohttp.ClientSession
) -> None:
    ws, _ = await sio_socket(http, sio[0])
    async with ws:
        await ws.send_bytes(mp(type=0, nsp="/random"))
        assert msgpack.unpackb(await next_frame(ws)) == {
            "type": 4,
            "data": {"message": "Invalid namespace"},
            "nsp": "/random",
        }
    ws = await connected(http, sio[0], "/")
    async with ws:
        await ws.send_bytes(mp(type=1, nsp="/"))  # the client leaves the namespace ...
        await ws.send_bytes(mp(type=2, nsp="/", data=["message", 1], id=2))  # ... so this goes nowhere
        await ws.send_bytes(mp(type=0, nsp="/custom"))
        answer = msgpack.unpackb(await next_frame(ws))
        assert answer["type"] == 0 and answer["nsp"] == "/custom"  # the event on "/" was not answered


async def test_a_server_disconnect_carries_no_data(http: aiohttp.ClientSession) -> None:
    """The JavaScript decoder refuses a DISCONNECT whose `data` is nil (upstream's MsgPackPacket)."""
    supervisor = Supervisor()
    app = socketio_app(Settings(), supervisor)
    try:
        async for url in serve(app):
            ws = await connected(http, f"{url}/socket.io/")
            async with ws:
                server = app[SIO]
                (sid,) = [sid for sid, _ in server.manager.get_participants("/custom", None)]
                await server.disconnect(sid, namespace="/custom")
                assert await next_frame(ws) == msgpack.packb({"type": 1, "nsp": "/custom"})
    finally:
        await supervisor.stop()


async def test_an_invalid_event_with_an_ack_id_is_answered_invalid(sio: Served, http: aiohttp.ClientSession) -> None:
    ws = await connected(http, sio[0])
    async with ws:
        for data in (
            ["message-with-ack", msgpack.ExtType(5, b"?")],
            {"not": "a list"},
            ["message-with-ack", {1: "int key"}],
        ):
            raw = msgpack.packb({"type": 2, "nsp": "/custom", "data": data, "id": 5})
            await ws.send_bytes(raw)
            answer = msgpack.unpackb(await next_frame(ws))
            assert answer["type"] == 3 and answer["id"] == 5 and answer["nsp"] == "/custom"
            assert answer["data"][0]["ok"] is False and answer["data"][0]["error"]["code"] == "invalid"
        await ws.send_bytes(mp(type=2, nsp="/custom", data=["message", 1]))  # the session lives on
        assert msgpack.unpackb(await next_frame(ws))["data"] == ["message-back", 1]


async def test_packets_nothing_can_answer_close_the_session(sio: Served, http: aiohttp.ClientSession) -> None:
    for frame in (
        b"\xc1",  # not MessagePack
        mp(type=2, nsp="/custom", data={"not": "a list"}),  # no ack id to answer on
        mp(type=4, nsp="/custom", data={}),  # CONNECT_ERROR is the server's
        '42/custom,["message",1]',  # text on a MessagePack session
    ):
        ws = await connected(http, sio[0])
        async with ws:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            assert await closed_by_server(ws), frame


async def test_json_and_messagepack_sessions_side_by_side(sio: Served, http: aiohttp.ClientSession) -> None:
    json_ws, recv = await sio_socket(http, sio[0])
    packed_ws = await connected(http, sio[0])
    async with json_ws, packed_ws:
        await json_ws.send_str("40/custom,")
        assert (await recv()).startswith("40/custom,")
        assert await recv() == '42/custom,["auth",{}]'
        await json_ws.send_str('42/custom,["message",1]')
        await packed_ws.send_bytes(mp(type=2, nsp="/custom", data=["message", 2]))
        assert await recv() == '42/custom,["message-back",1]'
        assert msgpack.unpackb(await next_frame(packed_ws))["data"] == ["message-back", 2]
        await json_ws.send_bytes(mp(type=2, nsp="/custom", data=["message", 3]))  # binary on a JSON session
        assert await closed_by_server(json_ws)


async def test_messagepack_over_polling_is_base64(sio: Served, http: aiohttp.ClientSession) -> None:
    url, _ = await open_polling(http, sio[0])
    connect = mp(type=0, nsp="/custom")
    assert await http_post(http, url, "b" + base64.b64encode(connect).decode()) == (200, "ok")
    status, body = await http_get(http, url)
    assert status == 200
    packets = [msgpack.unpackb(base64.b64decode(p[1:])) for p in body.split("\x1e") if p.startswith("b")]
    while len(packets) < 2:  # the `auth` emit may come in the next poll
        status, body = await http_get(http, url)
        packets += [msgpack.unpackb(base64.b64decode(p[1:])) for p in body.split("\x1e") if p.startswith("b")]
    assert packets[0]["type"] == 0 and packets[1] == {"type": 2, "data": ["auth", {}], "nsp": "/custom"}


async def test_messagepack_can_be_turned_off(http: aiohttp.ClientSession) -> None:
    supervisor = Supervisor()
    app = socketio_app(Settings(socket_msgpack=False), supervisor)
    try:
        async for url in serve(app):
            ws, _ = await sio_socket(http, f"{url}/socket.io/")
            async with ws:
                await ws.send_bytes(mp(type=0, nsp="/custom"))
                assert await closed_by_server(ws)
    finally:
        await supervisor.stop()
