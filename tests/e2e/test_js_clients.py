"""The official JavaScript client (socket.io-client 4.8.1), with the JSON parser and with
socket.io-msgpack-parser 3.0.2, against this server (issue 13): tests/js/client.mjs runs in
Node and prints what it received. `make test` installs tests/js with `npm ci`; without Node
these tests are skipped (their reason says so). Python-socketio's own MessagePack client is
here too: a negotiation in which parties on both parsers share the same rooms and emits."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pocho_rt.config import Settings
from pocho_rt.tasks import Supervisor
from pocho_rt.transport.conformance import socketio_app
from tests.e2e.util import LAGOS, customer, request_payload, vendor
from tests.helpers import Client
from tests.integration.transport_support import serve

JS = Path(__file__).parents[1] / "js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "socket.io-msgpack-parser").is_dir(),
    reason="needs Node.js and tests/js/node_modules (`make test` runs `npm ci --prefix tests/js`)",
)
GUARD = 60.0  # seconds: only stops a hang from passing (the script has its own 30 s guard)

# What tests/js/client.mjs sends (VALUES) comes back as the JSON parser carries it: a Date as
# its toJSON() text, undefined as null in an array and left out of an object, NaN and Infinity
# as null, a Buffer or a typed array as bytes.
ECHOED = [
    1,
    -2,
    3.5,
    2**40,
    "héllo ✓ 🍲",
    "",
    None,
    True,
    False,
    {"a": [1, {"b": "c"}], "empty": {}, "list": []},
    {"$bytes": "010203ff"},
    {"$bytes": "090807"},
    "2026-11-29T13:46:24.123Z",
    [None, 1],
    {"kept": 1, "nan": None, "inf": None},
]


async def run_js(*args: str) -> dict[str, Any]:
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE, str(JS / "client.mjs"), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), GUARD)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture
async def suite_server() -> AsyncIterator[str]:
    """`pocho-rt conformance`'s Socket.IO server (namespaces echoing what they get)."""
    supervisor = Supervisor()
    try:
        async for url in serve(socketio_app(Settings(), supervisor)):
            yield url
    finally:
        await supervisor.stop()


@needs_node
@pytest.mark.parametrize("transport", ["websocket", "polling", "default"])  # default: polling, then the upgrade
@pytest.mark.parametrize("parser", ["json", "msgpack"])
async def test_the_javascript_client_gets_back_what_it_sent(suite_server: str, parser: str, transport: str) -> None:
    result = await run_js("echo", suite_server, parser, transport)
    assert result["auth"] == {"token": "abc", "n": 1}
    assert result["back"] == ECHOED
    assert result["ack"] == ECHOED


@needs_node
@pytest.mark.parametrize(
    ("customer_parser", "vendor_parser", "transport"),
    [("msgpack", "json", "websocket"), ("json", "msgpack", "websocket"), ("msgpack", "msgpack", "polling")],
)
async def test_javascript_clients_on_either_parser_negotiate(
    client: Client, db: asyncpg.Connection, customer_parser: str, vendor_parser: str, transport: str
) -> None:
    cust = await customer(client)  # accounts (their Python sockets stay connected, on JSON)
    vend = await vendor(client, db)
    seen_by_python = vend.next("request:new")
    args = {
        "customerToken": cust.token,
        "vendorToken": vend.token,
        "customerParser": customer_parser,
        "vendorParser": vendor_parser,
        "transport": transport,
        "request": request_payload(),
    }
    result = await run_js("negotiate", client.server.url, json.dumps(args))

    request = result["created"]["data"]["request"]
    assert result["created"]["ok"] is True and request["status"] == "OPEN"
    assert result["seen"] == await seen_by_python  # one emit, the same event on both parsers
    offer = result["placed"]["data"]["offer"]
    assert result["placed"]["ok"] is True and offer["requestId"] == request["id"]
    assert result["offered"]["offer"]["id"] == offer["id"]
    order = result["accept"]["data"]["order"]
    assert result["accept"]["ok"] is True and order["status"] == "PENDING_PAYMENT"
    assert result["acceptedEvent"]["orderId"] == order["id"]
    # a NaN budget arrives as null on either parser (as JSON.stringify writes it): `invalid`
    assert result["refused"]["ok"] is False and result["refused"]["error"]["code"] == "invalid"


async def test_python_msgpack_and_json_clients_share_rooms_and_emits(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client, serializer="msgpack")
    plain = await vendor(client, db, name="On JSON")
    packed = await vendor(client, db, lat=LAGOS[0] + 0.01, name="On MessagePack", serializer="msgpack")
    new_plain, new_packed = plain.next("request:new"), packed.next("request:new")
    req = (await cust.ok("request:create", request_payload()))["request"]
    assert await new_plain == await new_packed  # one frame, packed once for the MessagePack vendor
    assert (await new_packed)["request"]["id"] == req["id"]

    offered = cust.next("offer:new")
    bid = (await packed.ok("offer:place", {"requestId": req["id"], "priceKobo": 310_000}))["offer"]
    assert (await offered)["offer"]["id"] == bid["id"]
    countered = packed.next("offer:countered")
    await cust.ok("offer:counter", {"offerId": bid["id"], "priceKobo": 290_000, "message": "abeg 🙏"})
    assert (await countered)["offer"]["counterPriceKobo"] == 290_000

    assert await cust.err("request:create", request_payload(budgetMaxKobo=math.inf)) == "invalid"
    accepted, rejected_nobody = packed.next("offer:accepted"), plain.next("request:closed")
    order = (await cust.ok("offer:accept", {"offerId": bid["id"]}))["order"]
    assert (await accepted)["orderId"] == order["id"]
    assert (await rejected_nobody)["requestId"] == req["id"]
