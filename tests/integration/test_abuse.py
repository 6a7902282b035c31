"""Abuse answered at once and bounded (issue 14, points 4-6): slow and unfinished HTTP
requests, too many connections from one address, a command flood on one socket, and bad
input that used to reach a 500 or no answer at all.

Everything runs on 127.0.0.1 against a real node; floods are bounded in count, and the
`GUARD` waits only stop a hang from passing (the deadlines under test are far shorter).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from tests.conftest import Server, StartServer
from tests.e2e.util import customer, request_payload, vendor
from tests.helpers import PASSWORD, Client, eventually, new_phone
from tests.integration.test_catalogue import new_item, new_vendor
from tests.proxy import TcpProxy, pg_target, started, via_proxy
from tests.raw import GUARD, RawSocket, raw_http


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def closed_without_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bool:
    """Keep sending `line` every 100 ms (a slowloris); True once the server has closed the
    connection without answering, False if it answered or never closed (within GUARD)."""
    for _ in range(int(GUARD / 0.1)):
        try:
            writer.write(line)
            await writer.drain()
        except (ConnectionError, OSError):
            return True
        try:
            got = await asyncio.wait_for(reader.read(1024), 0.1)
        except TimeoutError:
            continue
        except (ConnectionError, OSError):
            return True
        return got == b""  # EOF: closed; bytes: it answered a request that never finished
    return False


# ---------------------------------------------------------------- 4. slow and unfinished HTTP


@pytest.fixture
async def guarded(start_server: StartServer) -> Server:
    return await start_server(http_header_timeout=0.5, http_body_timeout=0.5)


async def test_headers_sent_slowly_are_cut_off(guarded: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(guarded))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert await closed_without_answer(reader, writer, b"X-Slow: 1\r\n")
    finally:
        writer.close()


async def test_an_upgrade_request_that_never_finishes_is_cut_off(guarded: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(guarded))
    try:
        writer.write(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
        )
        assert await closed_without_answer(reader, writer, b"")  # and then nothing at all
    finally:
        writer.close()


async def test_a_body_that_stops_arriving_gets_408_json_and_is_closed(guarded: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(guarded))
    try:
        writer.write(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200\r\n\r\n{"phone": "+23480'
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), GUARD)  # to EOF: the server closes after answering
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), raw
    assert orjson.loads(body)["error"]["code"] == "invalid"


async def test_keep_alive_requests_are_not_cut_off_by_the_header_deadline(guarded: Server) -> None:
    async with aiohttp.ClientSession(base_url=guarded.url) as session:
        for _ in range(3):  # one connection, kept alive across requests spread over the deadline
            async with session.get("/healthz") as resp:
                assert resp.status == 200
            await asyncio.sleep(0.3)


async def test_connections_per_ip_are_capped_with_a_json_503(start_server: StartServer) -> None:
    server = await start_server(http_max_connections_per_ip=3)
    port = port_of(server)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        status, headers, body = await raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and headers.get("retry-after"), (status, headers)
        assert orjson.loads(body)["error"]["code"] == "unavailable"
        _, first = held.pop()
        first.close()
        await first.wait_closed()

        async def one_more_is_served() -> bool:
            s, _, _ = await raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s == 200

        await eventually(one_more_is_served, what="a freed slot to be usable")
    finally:
        for _, w in held:
            w.close()


async def test_a_silent_websocket_is_closed_without_a_close_handshake_wait(start_server: StartServer) -> None:
    server = await start_server(ping_interval=1, ping_timeout=1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    try:
        writer.write(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        # We never answer anything, not even the close frame. The server must hang up by itself
        # after ping interval + timeout (2 s) and its short close handshake (1 s), not 10 s later.
        seen = b""
        while chunk := await asyncio.wait_for(reader.read(4096), 2 + 1 + 3):
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 101"), seen[:100]
    finally:
        writer.close()


# ---------------------------------------------------------------- 6. bad input: HTTP


def invalid(status: int, body: Any, expected: int = 400) -> None:
    assert status == expected, body
    assert body["error"]["code"] == "invalid", body


async def test_nul_characters_in_http_text_fields_are_invalid(client: Client, db: asyncpg.Connection) -> None:
    reg = {"phone": new_phone(), "password": PASSWORD, "role": "CUSTOMER", "firstName": "A\x00", "lastName": "B"}
    invalid(*await client.call("POST", "/api/v1/auth/register", reg))
    invalid(*await client.call("POST", "/api/v1/auth/login", {"phone": "+234\x00", "password": "x"}))
    token, v = await new_vendor(client, db)
    invalid(*await client.call("PATCH", f"/api/v1/vendors/{v['id']}", {"displayName": "Mama\x00"}, token=token))
    status, menu = await client.call("POST", f"/api/v1/vendors/{v['id']}/menus", {"title": "M"}, token=token)
    assert status == 201, menu
    item = {"name": "Rice\x00", "priceKobo": 1000}
    invalid(*await client.call("POST", f"/api/v1/menus/{menu['id']}/items", item, token=token))
    ok_item = await new_item(client, token, v["id"])
    invalid(*await client.call("PATCH", f"/api/v1/menu-items/{ok_item['id']}", {"description": "a\x00b"}, token=token))
    invalid(*await client.call("GET", "/api/v1/search?q=ri%00ce", token=token))
    status, same = await client.call("GET", f"/api/v1/vendors/{v['id']}", token=token)
    assert status == 200 and same["displayName"] == v["displayName"]  # nothing changed


async def test_deeply_nested_json_and_bad_utf8_are_invalid(client: Client) -> None:
    deep = b'{"phone": "+2348000000001", "password": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    headers = {"Content-Type": "application/json"}
    lone = b'{"phone": "\\ud800", "password": "x"}'
    for raw in (deep, b'{"phone": "\xff\xfe"}', lone):
        status, answer = await client.call("POST", "/api/v1/auth/login", data=raw, headers=headers)
        invalid(status, answer)
        assert set(answer["error"]["details"]) <= {"body", "phone"}, answer  # names what is wrong


async def test_json_with_another_content_type_is_415(client: Client) -> None:
    body = orjson.dumps({"phone": new_phone(), "password": PASSWORD})
    status, answer = await client.call("POST", "/api/v1/auth/login", data=body, headers={"Content-Type": "text/plain"})
    invalid(status, answer, 415)
    assert answer["error"]["details"] == {"contentType": "must be application/json"}


async def test_undecodable_header_bytes_are_invalid_not_500(server: Server) -> None:
    status, _, body = await raw_http(
        port_of(server),
        b"GET /admin/vendors/pending HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Admin-Key: cl\xe9\xff\r\n\r\n",
    )
    answer = orjson.loads(body)
    invalid(status, answer)
    assert list(answer["error"]["details"]) == ["X-Admin-Key"], answer  # the header is named


async def test_aiohttps_own_errors_are_json(server: Server) -> None:
    line = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body = await raw_http(port_of(server), line)
    assert 400 <= status < 500 and headers["content-type"].startswith("application/json"), (status, body)
    assert orjson.loads(body)["error"]["code"] == "invalid"
    status, headers, body = await raw_http(port_of(server), b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status == 400 and orjson.loads(body)["error"]["code"] == "invalid", body


# ---------------------------------------------------------------- 6. bad input: socket frames


async def test_unreadable_socket_frames_are_answered_invalid(client: Client, db: asyncpg.Connection) -> None:
    seller = await vendor(client, db)
    raw = RawSocket(client.session, client.server.url, "/vendor")
    await raw.connect(seller.token)
    try:
        for body in (
            '["offer:revise",{"offerId":"\\ud800","priceKobo":1}]',  # lone surrogate escape
            '["offer:revise",' + "[" * 2000 + "]" * 2000 + "]",  # nesting past 1024
            '{"not":"an array"}',
            "[]",
            "[42]",
            "[not json",
        ):
            reply = await raw.call_raw(body)
            assert reply["ok"] is False and reply["error"]["code"] == "invalid", (body[:40], reply)
        # NUL in a text field: the schema refuses it
        reply = await raw.call("offer:withdraw", {"offerId": "a\x00"})
        assert reply["ok"] is False and reply["error"]["code"] in ("invalid", "not_found"), reply
        # and the connection is fine afterwards
        assert (await raw.call("requests:nearby", {}))["ok"] is True
    finally:
        await raw.close()
    # Records of python-socketio/engine.io reach only our JSON root handler, never a plain one.
    for name in ("socketio.server", "engineio.server"):
        assert logging.getLogger(name).handlers == []


# ---------------------------------------------------------------- 5. a command flood on one socket


async def test_a_flood_is_refused_at_once_past_the_bucket_and_every_command_answered(
    start_server: StartServer, db: asyncpg.Connection
) -> None:
    server = await start_server(socket_command_rate=0.01, socket_command_burst=10, socket_backlog=64)
    async with aiohttp.ClientSession(base_url=server.url) as session:
        c = Client(session, server)
        try:
            cust, seller = await customer(c), await vendor(c, db)
            req = (await cust.ok("request:create", request_payload()))["request"]
            offer = (await seller.ok("offer:place", {"requestId": req["id"], "priceKobo": 400_000}))["offer"]
            # `offer:place` took 1 of the 10 tokens; at 0.01/s no more arrive during the test.
            flood = 500
            replies = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        seller.sio.call(
                            "offer:revise",
                            {"offerId": offer["id"], "priceKobo": 300_000 + i},
                            namespace="/vendor",
                            timeout=GUARD,
                        )
                        for i in range(flood)
                    )
                ),
                GUARD * 2,
            )
            codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
            assert codes.count("ok") + codes.count("rate_limited") == flood, set(codes)  # every one answered
            assert 1 <= codes.count("ok") <= 10
            limited = next(r for r in replies if not r["ok"])
            assert limited["error"]["details"]["limit"] == "socket_commands"
            assert limited["error"]["details"]["retryAfter"] >= 1
            revisions = await db.fetchval(
                "SELECT count(*) FROM negotiation_events WHERE request_id = $1 AND kind = 'offer:updated'", req["id"]
            )
            assert revisions == codes.count("ok")  # refused ones changed nothing
            # Another party on the node is served normally meanwhile and after.
            assert (await cust.ok("request:watch", {"requestId": req["id"]}))["request"]["id"] == req["id"]
        finally:
            await c.close()


async def test_a_backlog_of_slow_commands_never_starves_pings(
    start_server: StartServer, database_url: str, db: asyncpg.Connection
) -> None:
    """Commands stuck on a frozen PostgreSQL (each takes its deadline, ~1 s) queue on one socket
    for far longer than ping interval + timeout (2 s): the socket's pongs are read anyway, so the
    server never drops it, and the backlog past its bound is refused at once."""
    pg: TcpProxy = await started(pg_target(database_url))
    try:
        server = await start_server(
            via_db=via_proxy(database_url, pg.port),
            ping_interval=1,
            ping_timeout=1,
            db_acquire_timeout=0.5,
            db_query_timeout=0.5,
            socket_command_rate=0.01,
            socket_command_burst=8,
            socket_backlog=4,
        )
        async with aiohttp.ClientSession(base_url=server.url) as session:
            c = Client(session, server)
            try:
                seller = await vendor(c, db)
                dropped = asyncio.Event()
                seller.sio.on("disconnect", lambda *_: dropped.set(), namespace="/vendor")
                pg.freeze()
                replies = await asyncio.wait_for(
                    asyncio.gather(
                        *(
                            seller.sio.call("requests:nearby", {}, namespace="/vendor", timeout=GUARD * 2)
                            for _ in range(30)
                        )
                    ),
                    GUARD * 3,
                )
                codes = [r["error"]["code"] for r in replies]
                assert set(codes) <= {"unavailable", "rate_limited"}, codes
                handled = codes.count("unavailable")
                assert 1 <= handled <= 8 and codes.count("rate_limited") == 30 - handled
                pg.restore()
                assert not dropped.is_set() and seller.sio.connected
                assert seller.sio.connected and isinstance(
                    await seller.sio.call("auth:renew", {"token": seller.token}, namespace="/vendor"), dict
                )
            finally:
                await c.close()
    finally:
        await pg.close()
