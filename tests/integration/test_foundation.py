"""Health, readiness, metrics, error format, size limits and socket authentication."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import orjson
import pytest
import socketio

from pocho_rt.config import ConfigError, load_settings
from tests.conftest import StartServer
from tests.helpers import Client


async def test_health_ready_and_metrics(client: Client) -> None:
    assert (await client.call("GET", "/healthz"))[0] == 200
    status, body = await client.call("GET", "/readyz")
    assert status == 200 and body["checks"] == {"postgres": "ok", "redis": "ok", "loops": "ok", "shards": "ok"}
    async with client.session.get("/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'pocho_http_requests_total{method="GET",route="/readyz",status="200"}' in text
    assert "pocho_db_pool_size" in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names and all(n.startswith("pocho_") for n in names)


async def test_readyz_reports_down_database(client: Client) -> None:
    await client.server.svc.pool.close()
    status, body = await client.call("GET", "/readyz")
    assert status == 503 and body["checks"]["postgres"].startswith("down")


async def test_unknown_route_is_json_404_with_request_id(client: Client) -> None:
    async with client.session.get("/api/v1/nope", headers={"X-Request-Id": "abc123"}) as resp:
        body = await resp.json()
        assert resp.status == 404
        assert resp.headers["X-Request-Id"] == "abc123"
    assert body["error"]["code"] == "not_found"


async def test_http_body_over_limit_is_413(start_server: StartServer) -> None:
    import aiohttp

    server = await start_server(max_http_body_bytes=2048)
    async with aiohttp.ClientSession(base_url=server.url) as s:
        async with s.post(
            "/api/v1/auth/login", data=b"{" + b" " * 4096 + b"}", headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["code"] == "payload_too_large"


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings({"POCHO_ENV": "production"})
    with pytest.raises(ConfigError, match="POCHO_ADMIN_KEY"):
        load_settings({"POCHO_ENV": "production", "JWT_SECRET": "x" * 40})
    ok = load_settings(
        {
            "POCHO_ENV": "production",
            "JWT_SECRET": "x" * 40,
            "POCHO_ADMIN_KEY": "k" * 20,
            "POCHO_PII_KEY": "k1:" + "A" * 43,  # users (issue 15): keys for personal data at rest
            "POCHO_PII_INDEX_KEY": "B" * 43,
            "TERMII_API_KEY": "termii-live-key",  # notifications (issue 10): no dev SMS recorder
        }
    )
    assert ok.production
    with pytest.raises(ConfigError, match="PORT"):
        load_settings({"PORT": "eighty"})
    with pytest.raises(ConfigError, match="RATE_LIMIT_ENABLED"):
        load_settings({"RATE_LIMIT_ENABLED": "maybe"})


def _token(client: Client, role: str, **claims: object) -> str:
    tok, _ = client.server.svc.tokens.issue(str(uuid.uuid4()), role, str(uuid.uuid4()))
    if not claims:
        return tok
    body = jwt.decode(tok, options={"verify_signature": False}) | claims
    return jwt.encode(body, client.server.svc.settings.jwt_secret, algorithm="HS256")


async def _refused(client: Client, ns: str, token: str | None) -> object:
    """Connect and return the connect_error data the server sent."""
    sio = socketio.AsyncClient(reconnection=False)
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    sio.on("connect_error", lambda data: got.done() or got.set_result(data), namespace=ns)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            client.server.url,
            namespaces=[ns],
            auth={"token": token} if token else None,
            transports=["websocket"],
            wait_timeout=5,
        )
    return await asyncio.wait_for(got, 5)


@pytest.mark.parametrize("ns,role", [("/customer", "CUSTOMER"), ("/vendor", "VENDOR"), ("/rider", "RIDER")])
async def test_socket_accepts_matching_role(client: Client, ns: str, role: str) -> None:
    sio = await client.connect(ns, _token(client, role))
    assert sio.connected and ns in sio.namespaces


async def test_socket_refusals(client: Client) -> None:
    secret = client.server.svc.settings.jwt_secret
    now = int(time.time())
    base = {"sub": str(uuid.uuid4()), "role": "CUSTOMER", "sid": "s", "iat": now, "jti": "j"}
    forged = jwt.encode(base | {"exp": now + 60}, "not-the-secret-not-the-secret-123", algorithm="HS256")
    expired = jwt.encode(base | {"exp": now - 5, "iat": now - 100}, secret, algorithm="HS256")
    alg_none = jwt.encode(base | {"exp": now + 60}, None, algorithm="none")  # type: ignore[arg-type]
    for token in (None, "garbage", forged, expired, alg_none):
        assert await _refused(client, "/customer", token) == {
            "message": "unauthorized",
            "data": {"code": "unauthorized"},
        }
    forbidden = {"message": "forbidden", "data": {"code": "forbidden"}}
    assert await _refused(client, "/vendor", _token(client, "CUSTOMER")) == forbidden
    assert await _refused(client, "/rider", _token(client, "ADMIN")) == forbidden


async def test_unknown_event_is_not_found(client: Client) -> None:
    sio = await client.connect("/customer", _token(client, "CUSTOMER"))
    reply = await sio.call("no:such:event", {}, namespace="/customer", timeout=5)
    assert reply["ok"] is False and reply["error"]["code"] == "not_found"


async def test_oversized_socket_frame_closes_connection(start_server: StartServer) -> None:
    import aiohttp

    from tests.helpers import Client as C

    server = await start_server(max_socket_message_bytes=4096)
    async with aiohttp.ClientSession(base_url=server.url) as s:
        c = C(s, server)
        sio = await c.connect("/customer", _token(c, "CUSTOMER"))
        gone = asyncio.Event()
        sio.on("disconnect", lambda *a: gone.set(), namespace="/customer")
        await sio.emit("request:create", {"notes": "x" * 10_000}, namespace="/customer")
        await asyncio.wait_for(gone.wait(), 10)
        assert not sio.connected
        await c.close()


async def test_session_that_joins_no_namespace_is_closed(start_server: StartServer) -> None:
    import aiohttp

    server = await start_server(socket_connect_timeout=0.3)
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        opened = await ws.receive_str()
        assert opened.startswith("0{")  # engine.io OPEN; we never send the namespace CONNECT
        msg = await asyncio.wait_for(ws.receive(), 5)
        while msg.type == aiohttp.WSMsgType.TEXT:  # pings may come first
            msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_token_expiry_and_renewal_on_live_socket(start_server: StartServer) -> None:
    import aiohttp

    from tests.helpers import Client as C

    server = await start_server(session_expiry_grace=0.2)
    async with aiohttp.ClientSession(base_url=server.url) as s:
        c = C(s, server)
        user = str(uuid.uuid4())
        now = int(time.time())
        secret = server.svc.settings.jwt_secret

        def token(exp: int, sub: str = user) -> str:
            claims = {"sub": sub, "role": "CUSTOMER", "sid": "fam", "iat": now, "exp": exp, "jti": uuid.uuid4().hex}
            return jwt.encode(claims, secret, algorithm="HS256")

        # Renewed in time (the renewal first: the deadline is seconds away): the socket outlives its first token.
        expired_events: list[object] = []
        renewed = await c.connect("/customer", token(now + 3), on={"session:expired": expired_events.append})
        ack = await renewed.call("auth:renew", {"token": token(now + 60)}, namespace="/customer", timeout=5)
        assert ack["ok"] is True and ack["data"]["expiresAt"].endswith("Z")
        other = await renewed.call(
            "auth:renew", {"token": token(now + 60, sub=str(uuid.uuid4()))}, namespace="/customer", timeout=5
        )
        assert other["ok"] is False and other["error"]["code"] == "forbidden"
        bad = await renewed.call("auth:renew", {"token": "garbage"}, namespace="/customer", timeout=5)
        assert bad["error"]["code"] == "unauthorized"

        # Not renewed, same deadline as the first token above: session:expired, then the server hangs up.
        told: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        gone = asyncio.Event()
        await c.connect(
            "/customer",
            token(now + 3),
            on={"session:expired": lambda d: told.done() or told.set_result(d), "disconnect": lambda *a: gone.set()},
        )
        assert await asyncio.wait_for(told, 10) == {}
        await asyncio.wait_for(gone.wait(), 10)
        # That hang-up came after the renewed socket's first deadline; a round trip on that socket
        # after it would bring anything the server had sent it meanwhile.
        again = await renewed.call("auth:renew", {"token": token(now + 60)}, namespace="/customer", timeout=5)
        assert again["ok"] is True
        assert renewed.connected and expired_events == []
        await c.close()


async def test_renewal_during_grace_keeps_the_socket(start_server: StartServer) -> None:
    import aiohttp

    from tests.helpers import Client as C

    grace = 3  # ample for one renewal round trip after session:expired
    server = await start_server(session_expiry_grace=grace)
    async with aiohttp.ClientSession(base_url=server.url) as s:
        c = C(s, server)
        user, now, secret = str(uuid.uuid4()), int(time.time()), server.svc.settings.jwt_secret

        def token(exp: int) -> str:
            return jwt.encode(
                {"sub": user, "role": "CUSTOMER", "sid": "fam", "iat": now, "exp": exp, "jti": uuid.uuid4().hex},
                secret,
                algorithm="HS256",
            )

        told: asyncio.Queue[object] = asyncio.Queue()
        gone = asyncio.Event()
        sock = await c.connect(
            "/customer", token(now + 2), on={"session:expired": told.put_nowait, "disconnect": lambda *a: gone.set()}
        )
        assert await asyncio.wait_for(told.get(), 10) == {}
        # Renewed during the grace period, with a token that lapses at least a second after the
        # hang-up was due.
        ack = await sock.call(
            "auth:renew", {"token": token(int(time.time()) + grace + 2)}, namespace="/customer", timeout=5
        )
        assert ack["ok"] is True
        # That token's own session:expired reaches the socket: it was still connected past the
        # moment the first hang-up would have happened (which, if it happens, ends the wait at once).
        lapsed, hung_up = asyncio.ensure_future(told.get()), asyncio.ensure_future(gone.wait())
        await asyncio.wait([lapsed, hung_up], timeout=grace + 10, return_when=asyncio.FIRST_COMPLETED)
        hung_up.cancel()
        lapsed.cancel()
        assert not gone.is_set(), "the server hung up although the session was renewed"
        assert not lapsed.cancelled() and lapsed.result() == {}
        assert sock.connected
        await c.close()


async def test_upgrade_that_never_finishes_is_closed(start_server: StartServer) -> None:
    """Polling session, then a websocket that answers the probe but never sends UPGRADE."""
    import aiohttp

    server = await start_server(ping_interval=1, ping_timeout=1)
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as s:
        async with s.get(base) as r:
            handshake = await r.text()
        assert handshake.startswith("0{")
        sid = orjson.loads(handshake[1:])["sid"]
        url = server.url.replace("http", "ws") + f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
        async with s.ws_connect(url) as ws:
            await ws.send_str("2probe")
            assert await asyncio.wait_for(ws.receive_str(), 5) == "3probe"
            msg = await asyncio.wait_for(ws.receive(), 10)  # we never send "5": the server must hang up
            while msg.type == aiohttp.WSMsgType.TEXT:
                msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
