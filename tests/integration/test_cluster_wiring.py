"""Two in-process nodes on one PostgreSQL and one Redis, their cluster rounds driven by the test
(leases long enough that no round runs by itself): readiness while a node waits for its
share, the ops routes answering for the whole cluster, and the metrics of the moves."""

from __future__ import annotations

import aiohttp
import asyncpg

from engine.meal_request_actor import MEAL_REQUEST_KIND
from engine.runtime.placement import shards_for
from tests.conftest import Server, StartServer
from tests.e2e.util import customer, request_payload, vendor
from tests.helpers import Client, eventually

SLOW = {"cluster_node_lease_ms": 60_000, "cluster_shard_lease_ms": 60_000, "cluster_margin_ms": 5_000}


async def _get(session: aiohttp.ClientSession, server: Server, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"X-Admin-Key": server.svc.settings.admin_key}
    async with session.get(server.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_a_node_is_ready_once_it_holds_its_share_and_ops_see_every_node(start_server: StartServer) -> None:
    one = await start_server(node_id="one", **SLOW)
    two = await start_server(node_id="two", **SLOW)  # every shard is held by `one`: nothing to take yet
    async with aiohttp.ClientSession() as s:
        status, body = await _get(s, two, "/readyz")
        assert status == 503 and body["checks"]["shards"] == "moving"
        assert (await _get(s, one, "/readyz"))[0] == 200

        # Rounds: `one` sees `two` and hands over (64 shards per round), `two` takes them.
        for _ in range(3):
            await one.svc.cluster.node.round()
            await two.svc.cluster.node.round()
        status, body = await _get(s, two, "/readyz")
        assert status == 200 and body["checks"]["shards"] == "ok"

        wanted = {n: shards_for(n, ["one", "two"], 256) for n in ("one", "two")}
        status, body = await _get(s, two, "/admin/shards")
        assert status == 200 and len(body["shards"]) == 256
        assert {x["shard"] for x in body["shards"] if x["node"] == "two"} == wanted["two"]
        assert all(x["epoch"] >= 1 for x in body["shards"])
        moved = [x for x in body["shards"] if x["node"] == "two"]
        assert all(x["epoch"] == 2 for x in moved)  # taken by `one` at start, then by `two`

        status, body = await _get(s, one, "/admin/nodes")
        nodes = {n["id"]: n for n in body["nodes"]}
        assert status == 200 and set(nodes) == {"one", "two"}
        assert nodes["two"]["shards"] == len(wanted["two"]) and nodes["one"]["shards"] == len(wanted["one"])
        assert nodes["one"]["address"] == "127.0.0.1:0" and nodes["one"]["lastHeartbeat"].endswith("+00:00")

        # A request made through `one` whose actor lives on `two`: ops on `one` find it there.
        async with aiohttp.ClientSession(base_url=one.url) as session:
            client = Client(session, one)
            try:
                cust = await customer(client)
                for _ in range(20):
                    rid = (await cust.ok("request:create", request_payload()))["request"]["id"]
                    if one.svc.cluster.node.shard(MEAL_REQUEST_KIND, rid) in wanted["two"]:
                        break
                assert one.svc.actors.get(MEAL_REQUEST_KIND, rid) is None  # not live on `one`
                status, body = await _get(s, one, f"/admin/actors/{MEAL_REQUEST_KIND}/{rid}")
                assert status == 200 and body["node"] == "two" and body["state"]["request"]["id"] == rid
                status, body = await _get(s, one, f"/admin/actors?kind={MEAL_REQUEST_KIND}")
                assert {"kind": MEAL_REQUEST_KIND, "id": rid, "node": "two"} in body["actors"]
                async with s.post(
                    f"{one.url}/admin/actors/{MEAL_REQUEST_KIND}/{rid}/passivate",
                    headers={"X-Admin-Key": one.svc.settings.admin_key},
                ) as r:
                    assert r.status == 200 and (await r.json()) == {"passivated": True, "node": "two"}
                assert two.svc.actors.get(MEAL_REQUEST_KIND, rid) is None
            finally:
                await client.close()

        async with s.get(one.url + "/metrics") as r:
            text = await r.text()
        assert 'pocho_cluster_shard_moves_total{change="handed_off"}' in text
        sent = [line for line in text.splitlines() if line.startswith('pocho_cluster_messages_total{direction="sent"}')]
        assert sent and float(sent[0].split()[-1]) > 0  # request:create crossed to `two`


async def test_a_user_connected_to_another_node_counts_as_online_for_notifications(start_server: StartServer) -> None:
    from pocho_rt.notify_service import SocketPresence

    one = await start_server(node_id="one", **SLOW)
    two = await start_server(node_id="two", **SLOW)
    async with aiohttp.ClientSession(base_url=two.url) as session:
        client = Client(session, two)
        try:
            cust = await customer(client)  # its socket is on `two` only
            uid = cust.user["id"]
            assert one.svc.sio.manager.rooms.get("/customer", {}).get(f"user:{uid}") is None
            presence = SocketPresence(one.svc.sio)
            await eventually(
                lambda: one.svc.cluster.directory.nodes_for("/customer", f"user:{uid}") == {"two"},
                what="`two` announcing the user's room",
            )
            assert await presence.online([uid, "someone-else"]) == {uid}  # push skipped: the socket got it
        finally:
            await client.close()


async def test_a_node_restarted_under_its_id_forgets_the_viewers_it_published_before(
    start_server: StartServer, redis_url: str
) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    try:
        # Left by an earlier process "one" that died: two vendors viewing a request.
        await r.hset("pocho:presence:req-1", mapping={"one": "v1\nv2", "other": "v3"})
        one = await start_server(node_id="one", **SLOW)
        assert await r.hgetall("pocho:presence:req-1") == {b"other": b"v3"}
        assert await one.svc.negotiation.viewing("req-1") == 0  # "other" is not a live node
    finally:
        await r.aclose()


async def test_frames_relayed_from_another_node_reach_a_messagepack_client_packed(
    start_server: StartServer, db: asyncpg.Connection
) -> None:
    """The relay forwards the JSON text of an emit; the receiving node packs it once for its
    socket.io-msgpack-parser members (issue 13)."""
    one = await start_server(node_id="one", **SLOW)  # holds every shard: the actors live here
    two = await start_server(node_id="two", **SLOW)
    async with aiohttp.ClientSession(base_url=one.url) as s1, aiohttp.ClientSession(base_url=two.url) as s2:
        on_one, on_two = Client(s1, one), Client(s2, two)
        try:
            vend = await vendor(on_one, db)  # JSON, on `one`
            cust = await customer(on_two, serializer="msgpack")  # MessagePack, on `two`
            await eventually(
                lambda: one.svc.cluster.directory.nodes_for("/customer", f"user:{cust.user['id']}") == {"two"},
                what="`two` announcing the customer's room",
            )
            seen = vend.next("request:new")
            req = (await cust.ok("request:create", request_payload()))["request"]  # asked across to `one`
            assert (await seen)["request"]["id"] == req["id"]
            offered = cust.next("offer:new")
            offer = (await vend.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]
            got = await offered  # emitted on `one`, relayed to `two`, packed there
            assert got["offer"]["id"] == offer["id"] and got["offer"]["priceKobo"] == 300_000
        finally:
            await on_one.close()
            await on_two.close()
