"""The transport against the published protocols (issue 13), with raw HTTP and websocket
clients: https://socket.io/docs/v4/engine-io-protocol/ and
https://socket.io/docs/v4/socket-io-protocol/.

The servers are `pocho-rt conformance`'s (our create_sio / Engine, the suites' settings:
ping interval 300 ms, ping timeout 200 ms, maxPayload 1,000,000); the official suites
themselves are run by hand (docs/TRANSPORT.md). The servers and raw-client helpers are in
tests/integration/transport_support.py.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from pocho_rt.config import load_settings
from pocho_rt.transport.session import SLOW_READER_BYTES
from tests.helpers import eventually
from tests.integration.transport_support import (
    RS,
    Served,
    closed_by_server,
    http_get,
    http_post,
    next_frame,
    open_polling,
    sio_socket,
    ws_url,
)

# ---------------------------------------------------------------- Engine.IO: handshake


async def test_polling_handshake_advertises_sub_second_ping_settings(eio: Served, http: aiohttp.ClientSession) -> None:
    _, handshake = await open_polling(http, eio[0])
    assert set(handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert handshake["upgrades"] == ["websocket"]
    assert (handshake["pingInterval"], handshake["pingTimeout"]) == (300, 200)
    assert handshake["maxPayload"] == 1_000_000


async def test_websocket_handshake_offers_no_upgrade(eio: Served, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(eio[0]) + "?EIO=4&transport=websocket") as ws:
        first = await next_frame(ws)
        assert first.startswith("0")
        handshake = orjson.loads(first[1:])
        assert handshake["upgrades"] == [] and handshake["pingInterval"] == 300


@pytest.mark.parametrize(
    "method,query",
    [
        ("GET", "transport=polling"),  # no EIO
        ("GET", "EIO=abc&transport=polling"),
        ("GET", "EIO=3&transport=polling"),
        ("GET", "EIO=4"),  # no transport
        ("GET", "EIO=4&transport=abc"),
        ("GET", "EIO=4&transport=websocket"),  # websocket without the Upgrade header
        ("POST", "EIO=4&transport=polling"),  # a handshake is a GET
        ("PUT", "EIO=4&transport=polling"),
        ("DELETE", "EIO=4&transport=polling"),
        ("GET", "EIO=4&transport=polling&sid=unknown"),
    ],
)
async def test_bad_requests_are_400(eio: Served, http: aiohttp.ClientSession, method: str, query: str) -> None:
    async with http.request(method, f"{eio[0]}?{query}") as r:
        assert r.status == 400, (method, query, r.status)


# ---------------------------------------------------------------- Engine.IO: messages


async def test_polling_carries_text_and_binary_packets(eio: Served, http: aiohttp.ClientSession) -> None:
    url, _ = await open_polling(http, eio[0])
    payload = RS.join(["4hello", "4é, ünïcode", "bAQIDBA=="])
    assert await http_post(http, url, payload) == (200, "ok")
    assert await http_get(http, url) == (200, payload)  # echoed in order, binary as base64


async def test_websocket_carries_text_and_binary_frames(eio: Served, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(eio[0]) + "?EIO=4&transport=websocket") as ws:
        await next_frame(ws)
        await ws.send_str("4hello")
        assert await next_frame(ws) == "4hello"
        await ws.send_bytes(b"\x01\x02\x03\x04")
        assert await next_frame(ws) == b"\x01\x02\x03\x04"


@pytest.mark.parametrize("body", ["abc", "4ok" + RS + "9", "", "b!!notbase64"])
async def test_an_invalid_polling_packet_closes_the_session(
    eio: Served, http: aiohttp.ClientSession, body: str
) -> None:
    url, _ = await open_polling(http, eio[0])
    status, _ = await http_post(http, url, body)
    assert status == 400
    assert (await http_get(http, url))[0] == 400


async def _closed_after(http: aiohttp.ClientSession, base: str, frame: str) -> bool:
    """Open a websocket session, send `frame`: True once the server has closed it."""
    async with http.ws_connect(ws_url(base) + "?EIO=4&transport=websocket") as ws:
        await next_frame(ws)
        await ws.send_str(frame)
        return await closed_by_server(ws)


async def test_an_invalid_websocket_packet_closes_the_session(eio: Served, http: aiohttp.ClientSession) -> None:
    assert await _closed_after(http, eio[0], "abc")


async def test_a_duplicate_poll_closes_the_session(eio: Served, http: aiohttp.ClientSession) -> None:
    url, handshake = await open_polling(http, eio[0])
    session = eio[1].sockets[handshake["sid"]]
    first = asyncio.ensure_future(http_get(http, url))
    await eventually(lambda: session.polling, what="the first GET to wait")
    assert (await http_get(http, url))[0] == 400
    assert await first == (200, "1")  # the pending poll is told: CLOSE
    assert (await http_get(http, url))[0] == 400


async def test_a_websocket_client_that_stops_reading_is_closed(eio: Served) -> None:
    """Sends never wait for a slow reader; past SLOW_READER_BYTES unread it is closed."""
    base, engine = eio
    port = int(base.split(":")[2].split("/")[0])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        await eventually(lambda: len(engine.sockets) == 1, what="the session")
        sid = next(iter(engine.sockets))
        session = engine.sockets[sid]
        chunk = "x" * 65536
        for _ in range(2 * SLOW_READER_BYTES // len(chunk) + 400):  # past the kernel's buffers too
            await engine.send(sid, chunk)  # returns at once: nothing waits on this reader
        await eventually(lambda: sid not in engine.sockets, what="the slow reader to be closed")
        # Closed by the server for falling behind (pings are 25 s apart here: not a ping timeout).
        assert session.closed and sid not in engine.sockets
    finally:
        writer.close()


# ---------------------------------------------------------------- Engine.IO: heartbeat


async def test_polling_ping_pong_keeps_the_session(eio: Served, http: aiohttp.ClientSession) -> None:
    url, _ = await open_polling(http, eio[0])
    for _ in range(3):
        assert await http_get(http, url) == (200, "2")
        assert await http_post(http, url, "3") == (200, "ok")


async def test_polling_session_without_pong_is_dropped(eio: Served, http: aiohttp.ClientSession) -> None:
    url, handshake = await open_polling(http, eio[0])
    engine = eio[1]
    await eventually(lambda: handshake["sid"] not in engine.sockets, what="the ping timeout")
    assert (await http_get(http, url))[0] == 400


async def test_websocket_ping_pong_and_timeout(eio: Served, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(eio[0]) + "?EIO=4&transport=websocket") as ws:
        await next_frame(ws)
        for _ in range(3):
            assert await next_frame(ws, skip_pings=False) == "2"
            await ws.send_str("3")
        assert await closed_by_server(ws)  # no pong for the next ping: closed


# ---------------------------------------------------------------- Engine.IO: close


async def test_client_close_over_polling_releases_the_pending_poll(eio: Served, http: aiohttp.ClientSession) -> None:
    url, handshake = await open_polling(http, eio[0])
    session = eio[1].sockets[handshake["sid"]]
    pending = asyncio.ensure_future(http_get(http, url))
    await eventually(lambda: session.polling, what="the GET to wait")
    assert await http_post(http, url, "1") == (200, "ok")
    assert await pending == (200, "6")
    assert (await http_get(http, url))[0] == 400


async def test_client_close_over_websocket_closes_it(eio: Served, http: aiohttp.ClientSession) -> None:
    assert await _closed_after(http, eio[0], "1")


async def test_server_close_reaches_a_polling_client_that_polls_later(eio: Served, http: aiohttp.ClientSession) -> None:
    url, handshake = await open_polling(http, eio[0])
    await eio[1].disconnect(handshake["sid"])
    assert await http_get(http, url) == (200, "1")
    assert (await http_get(http, url))[0] == 400


# ---------------------------------------------------------------- Engine.IO: upgrade


async def test_upgrade_from_polling_to_websocket(eio: Served, http: aiohttp.ClientSession) -> None:
    url, handshake = await open_polling(http, eio[0])
    async with http.ws_connect(ws_url(eio[0]) + f"?EIO=4&transport=websocket&sid={handshake['sid']}") as ws:
        await ws.send_str("2probe")
        assert await next_frame(ws) == "3probe"
        assert await http_get(http, url) == (200, "6")  # the poll that ends polling
        await ws.send_str("5")
        await ws.send_str("4hello")
        assert await next_frame(ws) == "4hello"  # no NOOP left over ahead of it
        assert (await http_get(http, url))[0] == 400  # polling is over for this sid
        async with http.ws_connect(ws_url(eio[0]) + f"?EIO=4&transport=websocket&sid={handshake['sid']}") as second:
            assert await closed_by_server(second)  # opened, then closed
        await ws.send_str("4still here")
        assert await next_frame(ws) == "4still here"


async def test_packets_sent_during_the_upgrade_arrive_over_the_websocket(
    eio: Served, http: aiohttp.ClientSession
) -> None:
    url, handshake = await open_polling(http, eio[0])
    async with http.ws_connect(ws_url(eio[0]) + f"?EIO=4&transport=websocket&sid={handshake['sid']}") as ws:
        await ws.send_str("2probe")
        assert await next_frame(ws) == "3probe"
        await eio[1].send(handshake["sid"], "during")
        assert await http_get(http, url) == (200, "6")
        await ws.send_str("5")
        assert await next_frame(ws) == "4during"


# ---------------------------------------------------------------- Socket.IO


async def test_namespace_connect_answers_sid_then_the_servers_first_emit(
    sio: Served, http: aiohttp.ClientSession
) -> None:
    for connect, prefix, auth in (
        ("40", "40", "{}"),
        ('40{"token":"123"}', "40", '{"token":"123"}'),
        ("40/custom,", "40/custom,", "{}"),
        ('40/custom,{"token":"abc"}', "40/custom,", '{"token":"abc"}'),
    ):
        ws, recv = await sio_socket(http, sio[0])
        async with ws:
            await ws.send_str(connect)
            answer = await recv()
            assert answer.startswith(prefix) and set(orjson.loads(answer[len(prefix) :])) == {"sid"}, answer
            ns = prefix[2:]
            assert await recv() == f'42{ns}["auth",{auth}]'


async def test_unknown_namespace_is_refused_with_an_error_object(sio: Served, http: aiohttp.ClientSession) -> None:
    ws, recv = await sio_socket(http, sio[0])
    async with ws:
        await ws.send_str("40/random")
        assert await recv() == '44/random,{"message":"Invalid namespace"}'


async def test_events_and_acks_in_plain_text(sio: Served, http: aiohttp.ClientSession) -> None:
    ws, recv = await sio_socket(http, sio[0])
    async with ws:
        await ws.send_str("40")
        await recv(), await recv()
        await ws.send_str('42["message",1,"2",{"3":[true]}]')
        assert await recv() == '42["message-back",1,"2",{"3":[true]}]'
        await ws.send_str('42456["message-with-ack",1,"2",{"3":[false]}]')
        assert await recv() == '43456[1,"2",{"3":[false]}]'


async def test_binary_attachments_in_both_directions(sio: Served, http: aiohttp.ClientSession) -> None:
    ws, recv = await sio_socket(http, sio[0])
    placeholders = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
    attachments = [b"\x01\x02\x03", b"\x04\x05\x06"]
    async with ws:
        await ws.send_str("40")
        await recv(), await recv()
        for sent, answer in (
            (f'452-["message",{placeholders}]', f'452-["message-back",{placeholders}]'),  # event, event back
            (f'452-789["message-with-ack",{placeholders}]', f"462-789[{placeholders}]"),  # event, binary ack
        ):
            await ws.send_str(sent)
            for attachment in attachments:
                await ws.send_bytes(attachment)
            assert [await recv(), await recv(), await recv()] == [answer, *attachments]


async def test_namespace_disconnect_leaves_the_others(sio: Served, http: aiohttp.ClientSession) -> None:
    ws, recv = await sio_socket(http, sio[0])
    async with ws:
        await ws.send_str("40")
        await recv(), await recv()
        await ws.send_str("40/custom,")
        await recv(), await recv()
        await ws.send_str("41/custom,")
        await ws.send_str('42["message","to main"]')
        assert await recv() == '42["message-back","to main"]'


@pytest.mark.parametrize(
    "frame",
    [
        "4abc",  # unknown packet type
        "42{}",  # an event that is not an array, no ack id to answer on
        '42abc["message-with-ack",1]',  # an invalid ack id
        b"\x00",  # a binary attachment nobody announced
    ],
)
async def test_invalid_socketio_packets_close_the_connection(
    sio: Served, http: aiohttp.ClientSession, frame: str | bytes
) -> None:
    ws, recv = await sio_socket(http, sio[0])
    async with ws:
        await ws.send_str("40")
        await recv(), await recv()
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        assert await closed_by_server(ws)


async def test_a_session_that_joins_no_namespace_is_closed(sio: Served, http: aiohttp.ClientSession) -> None:
    ws, _ = await sio_socket(http, sio[0])
    async with ws:
        assert await closed_by_server(ws)


def test_sub_second_ping_settings_are_accepted() -> None:
    settings = load_settings({"POCHO_PING_INTERVAL": "0.3", "POCHO_PING_TIMEOUT": "0.2"})
    assert (settings.ping_interval, settings.ping_timeout) == (0.3, 0.2)
