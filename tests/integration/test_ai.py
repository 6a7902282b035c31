"""The ML clients against a local ML server (tests/fakes/ai.py): answers, errors, slow answers
past the timeout, bad answers, a wrong key, the breaker opening and closing; offer rankings in
`request:watch`; the AI ETA in `rider:location` with SpeedEta as the fallback."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from adapters.ai.breaker import CLOSED, OPEN
from adapters.ai.client import AiClient, AiUnavailable
from adapters.ai.services import EtaAnswer, EtaClient, EtaQuery, Point
from engine.assignment import RIDER_KIND, Carrying
from engine.geometry import distance_km
from engine.tracking import SpeedEta
from pocho_rt.ai_eta import AiEta
from pocho_rt.ai_service import AiServices
from pocho_rt.config import ConfigError, Settings, load_settings
from pocho_rt.publisher import order_room
from tests.conftest import StartServer
from tests.e2e.test_riders import _order, ping, rider, rider_id
from tests.e2e.util import LAGOS, customer, request_payload, vendor
from tests.fakes.ai import ETA, RANK, FakeAi
from tests.helpers import Client, eventually

KEY = "test-ai-key"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAi]:
    ai = await FakeAi(KEY).start()
    try:
        yield ai
    finally:
        await ai.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def eta_client(fake: FakeAi, clock: Clock, *, key: str = KEY, failures: int = 3) -> tuple[AiClient, EtaClient]:
    c = AiClient(
        "eta", fake.url, key, timeout_seconds=0.2, breaker_failures=failures, breaker_reset_seconds=30, clock=clock
    )
    return c, EtaClient(c)


QUERY = EtaQuery(Point(6.5, 3.3), Point(6.6, 3.4), 20.0)


async def reason(client: EtaClient) -> str:
    with pytest.raises(AiUnavailable) as info:
        await client.eta(QUERY)
    return info.value.reason


async def test_answers_and_every_kind_of_failure(fake: FakeAi) -> None:
    raw, client = eta_client(fake, Clock(), failures=100)
    try:
        assert await client.eta(QUERY) == EtaAnswer(42)
        assert fake.calls[ETA][-1] == {
            "origin": {"lat": 6.5, "lng": 3.3},
            "destination": {"lat": 6.6, "lng": 3.4},
            "speedKmh": 20.0,
        }
        fake.mode[ETA] = "error"
        assert await reason(client) == "status"
        fake.mode[ETA] = "slow"  # answers after 5 s; the client gives up at 0.2 s
        assert await reason(client) == "timeout"
        fake.mode[ETA] = "garbage"
        assert await reason(client) == "invalid"
        fake.mode[ETA] = "ok"
        fake.answers[ETA] = {"etaMinutes": -3}  # out of range
        assert await reason(client) == "invalid"
        fake.answers[ETA] = {"etaMinutes": 7.5}
        assert await client.eta(QUERY) == EtaAnswer(7.5)
        assert raw.breaker.state == CLOSED
    finally:
        await raw.close()
    raw, client = eta_client(fake, Clock(), key="wrong")
    try:
        assert await reason(client) == "status"
    finally:
        await raw.close()


async def test_the_breaker_opens_after_repeated_failures_and_closes_after_a_good_trial(fake: FakeAi) -> None:
    clock = Clock()
    raw, client = eta_client(fake, clock, failures=3)
    try:
        fake.mode[ETA] = "slow"
        assert [await reason(client) for _ in range(3)] == ["timeout"] * 3
        assert raw.breaker.state == OPEN
        sent = len(fake.calls[ETA])
        fake.mode[ETA] = "ok"
        assert await reason(client) == "open"  # refused at once, nothing sent
        assert len(fake.calls[ETA]) == sent
        clock.now = 30.0  # the reset period has passed: one trial goes out
        fake.mode[ETA] = "error"
        assert await reason(client) == "status"
        assert raw.breaker.state == OPEN and len(fake.calls[ETA]) == sent + 1
        assert await reason(client) == "open"
        clock.now = 60.0
        fake.mode[ETA] = "ok"
        assert await client.eta(QUERY) == EtaAnswer(42)  # the trial succeeds: closed again
        assert raw.breaker.state == CLOSED
        assert await client.eta(QUERY) == EtaAnswer(42)
        assert len(fake.calls[ETA]) == sent + 3
    finally:
        await raw.close()


def test_flags_need_their_urls_and_parse_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="AI_ETA_URL"):
        AiServices(Settings(feature_ai_eta=True), pool=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="AUTO_BID_URL"):
        AiServices(Settings(feature_auto_bid=True), pool=None)  # type: ignore[arg-type]
    s = load_settings(
        {
            "FEATURE_AI_RECOMMENDATIONS": "true",
            "AI_RECOMMENDATIONS_URL": "http://ml:9000",
            "AI_RECOMMENDATIONS_KEY": "k",
            "AI_TIMEOUT_MS": "250",
            "AI_BREAKER_FAILURES": "7",
            "POCHO_ANALYTICS_REFRESH_SECONDS": "2.5",
        }
    )
    assert (s.feature_ai_recommendations, s.ai_recommendations_url, s.ai_recommendations_key) == (
        True,
        "http://ml:9000",
        "k",
    )
    assert (s.ai_timeout_ms, s.ai_breaker_failures, s.analytics_refresh_seconds) == (250.0, 7, 2.5)
    with pytest.raises(ConfigError, match="AI_TIMEOUT_MS"):
        load_settings({"AI_TIMEOUT_MS": "0"})


# ---------------------------------------------------------------- recommendations


async def test_watch_ranks_live_offers_and_falls_back_to_the_cheapest_first(
    start_server: StartServer, fake: FakeAi, db: asyncpg.Connection
) -> None:
    server = await start_server(
        feature_ai_recommendations=True, ai_recommendations_url=fake.url, ai_recommendations_key=KEY, ai_timeout_ms=200
    )
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust = await customer(client)
            v1, v2, v3 = [await vendor(client, db) for _ in range(3)]
            req = (await cust.ok("request:create", request_payload()))["request"]
            ids = []
            for v, price in ((v1, 300_000), (v2, 250_000), (v3, 400_000)):
                ids.append((await v.ok("offer:place", {"requestId": req["id"], "priceKobo": price}))["offer"]["id"])
            await v3.ok("offer:withdraw", {"offerId": ids[2]})

            def ranks(snapshot: dict[str, Any]) -> dict[str, Any]:
                return {o["id"]: o["rank"] for o in snapshot["offers"]}

            # The fake ranks the live offers it is sent in reverse: v2's, then v1's.
            watched = await cust.ok("request:watch", {"requestId": req["id"]})
            assert watched["ranking"] == "ai"
            assert ranks(watched) == {ids[0]: 2, ids[1]: 1, ids[2]: None}
            sent = fake.calls[RANK][-1]
            assert sent["customerId"] == cust.user["id"] and sent["requestId"] == req["id"]
            assert [o["id"] for o in sent["offers"]] == [ids[0], ids[1]]  # live offers only
            assert sent["offers"][0]["priceKobo"] == 300_000 and sent["budgetMaxKobo"] == 500_000

            # Failing, slow or nonsensical: the built-in ranking, cheapest first; the watch still answers.
            for mode in ("error", "slow", "garbage"):
                fake.mode[RANK] = mode
                watched = await cust.ok("request:watch", {"requestId": req["id"]})
                assert watched["ranking"] == "builtin", mode
                assert ranks(watched) == {ids[0]: 2, ids[1]: 1, ids[2]: None}
            fake.mode[RANK] = "ok"
            fake.answers[RANK] = {"offerIds": [ids[0], "unknown"]}
            watched = await cust.ok("request:watch", {"requestId": req["id"]})
            assert watched["ranking"] == "ai" and ranks(watched) == {ids[0]: 1, ids[1]: 2, ids[2]: None}
        finally:
            await client.close()


async def test_without_the_flag_the_watch_ranks_cheapest_first(client: Client, db: asyncpg.Connection) -> None:
    cust = await customer(client)
    v1, v2 = await vendor(client, db), await vendor(client, db)
    req = (await cust.ok("request:create", request_payload()))["request"]
    a = (await v1.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]["id"]
    b = (await v2.ok("offer:place", {"requestId": req["id"], "priceKobo": 200_000}))["offer"]["id"]
    watched = await cust.ok("request:watch", {"requestId": req["id"]})
    assert watched["ranking"] == "builtin"
    assert {o["id"]: o["rank"] for o in watched["offers"]} == {a: 2, b: 1}


# ---------------------------------------------------------------- ETA


async def test_rider_location_uses_the_ai_eta_and_falls_back_to_speed(
    start_server: StartServer, fake: FakeAi, db: asyncpg.Connection
) -> None:
    server = await start_server(
        feature_ai_eta=True,
        ai_eta_url=fake.url,
        ai_eta_key=KEY,
        ai_timeout_ms=200,
        ai_eta_refresh_ms=20,
        ai_eta_fresh_seconds=0.5,
        ai_breaker_failures=2,
        ai_breaker_reset_seconds=3600,
        rider_location_flush_ms=20,
    )
    async with aiohttp.ClientSession(base_url=server.url) as session:
        client = Client(session, server)
        try:
            cust, order_id = await _order(client, db)
            cust.listen("rider:location")
            await server.svc.sio.enter_room(cust.sio.get_sid("/customer"), order_room(order_id), namespace="/customer")
            r = await rider(client)
            rid = rider_id(r)
            await r.ok("rider:online", {"lat": LAGOS[0], "lng": LAGOS[1]})
            drop = (LAGOS[0] + 0.0895, LAGOS[1])  # ~10 km north
            first = cust.next("rider:location")
            server.svc.actors.tell(RIDER_KIND, rid, Carrying(order_id, *drop))
            assert (await first)["etaMinutes"] == 40  # nothing from the service yet: SpeedEta
            step = [0]
            last: dict[str, Any] = {}

            async def moved_eta() -> int:
                step[0] += 1
                p = ping(LAGOS[0] + 0.0001 * step[0], speedKmh=30.0)
                nxt = cust.next("rider:location")
                assert await r.ok("location", p) == {"online": True}
                last.update(await nxt)
                return int(last["etaMinutes"])

            def speed_eta() -> int:
                return max(1, math.ceil(distance_km(last["lat"], last["lng"], *drop) / 30.0 * 60))

            async def from_ai() -> bool:
                return await moved_eta() == 42

            await eventually(from_ai, what="the AI estimate in rider:location")
            asked = fake.calls[ETA][-1]
            assert asked["destination"] == {"lat": drop[0], "lng": drop[1]} and asked["speedKmh"] == 30.0

            fake.mode[ETA] = "slow"  # past the timeout: the estimate ages out, SpeedEta answers

            async def from_speed() -> bool:
                return await moved_eta() == speed_eta() != 42

            await eventually(from_speed, what="SpeedEta once the AI estimate is stale")
            eta_breaker = server.svc.ai.clients[0].breaker
            await eventually(lambda: eta_breaker.state == OPEN, what="the ETA breaker to open")
            sent = len(fake.calls[ETA])
            for _ in range(3):
                assert await moved_eta() == speed_eta()
            assert len(fake.calls[ETA]) == sent  # open: nothing more is sent
        finally:
            await client.close()


async def test_ai_eta_cache_freshness_and_drift(fake: FakeAi) -> None:
    """The estimator answers from its last refresh only while fresh and near the estimate's origin."""
    clock = Clock()
    raw, client = eta_client(fake, clock)
    eta = AiEta(client, refresh_seconds=1.0, fresh_seconds=100.0, clock=clock)
    here, drop = (6.5, 3.3), (6.6, 3.3)  # ~11 km
    builtin = SpeedEta().eta_minutes(*here, *drop, 30.0)
    try:
        assert eta.eta_minutes(*here, *drop, 30.0) == builtin  # nothing fetched yet
        assert await eta.refresh() == 1
        assert fake.calls[ETA][-1]["origin"] == {"lat": 6.5, "lng": 3.3}
        assert eta.eta_minutes(*here, *drop, 30.0) == 42
        assert eta.eta_minutes(6.509, 3.3, *drop, 30.0) == SpeedEta().eta_minutes(6.509, 3.3, *drop, 30.0)  # 1 km off
        clock.now = 60.0
        assert eta.eta_minutes(*here, *drop, 30.0) == 41  # a minute later, a minute less
        clock.now = 101.0
        assert eta.eta_minutes(*here, *drop, 30.0) == builtin  # stale
        fake.mode[ETA] = "error"
        assert await eta.refresh() == 0  # the stale estimate is dropped, nothing new stored
        assert eta.eta_minutes(*here, *drop, 30.0) == builtin
    finally:
        await raw.close()
