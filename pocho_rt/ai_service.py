"""The ML services wired into the live flow (docs/AI.md), each behind its feature flag and
never in a position to stall or fail it:

- auto-bid (`AutoBidder`): after a `request:new` is delivered, the vendors it reached that
  have a matching standing rule get a price suggestion and bid as ordinary offers. Runs in
  its own supervised loop: request creation never waits for it.
- recommendations (`AiServices.ranked`): the customer's `request:watch` reply ranks the
  live offers; the one ML call is bounded by the timeout (and skipped while the breaker is
  open), the built-in ranking answers otherwise.
- ETA (`pocho_rt.ai_eta.AiEta`): the rider actor's estimator, answered from a cache a
  background loop keeps filled; never awaited in the actor's turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import asyncpg
from prometheus_client import Counter

from adapters.ai.client import AiClient, AiUnavailable
from adapters.ai.services import (
    AutoBidClient,
    BidRequest,
    BidRule,
    BidVendor,
    EtaClient,
    Point,
    RankOffer,
    RankOffers,
    RecommendationsClient,
    SuggestPrice,
)
from engine import autobid, recommend
from engine import negotiation as n
from engine.clock import iso, utcnow
from engine.errors import EngineError
from engine.limits import AUTOBID_QUEUE_MAX
from engine.runtime.metrics import REGISTRY
from persistence import autobid as autobid_db
from pocho_rt.ai_eta import AiEta
from pocho_rt.config import ConfigError, Settings
from pocho_rt.tasks import Supervisor

if TYPE_CHECKING:
    from pocho_rt.negotiation_service import NegotiationService

log = logging.getLogger("pocho.ai")

AUTOBIDS = Counter(
    "pocho_autobid_total",
    "Auto-bid decisions by outcome (placed, no_match, no_suggestion, skipped, refused code)",
    ["outcome"],
    registry=REGISTRY,
)
RANKINGS = Counter(
    "pocho_ai_rankings_total", "request:watch rankings by source (ai, builtin)", ["source"], registry=REGISTRY
)
_AUTOBID_WORKERS = 4  # requests handled at once
_AUTOBID_CLIENT_MSG_ID = "auto-bid"  # one automatic bid per vendor and request, even if asked twice


def _client(settings: Settings, service: str, url: str | None, key: str, flag: str, url_var: str) -> AiClient:
    if not url:
        raise ConfigError(f"{flag}=true needs {url_var}")
    return AiClient(
        service,
        url,
        key,
        timeout_seconds=settings.ai_timeout_ms / 1000.0,
        breaker_failures=settings.ai_breaker_failures,
        breaker_reset_seconds=settings.ai_breaker_reset_seconds,
    )


class AiServices:
    """The enabled ML clients of this node and what uses them."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.clients: list[AiClient] = []
        self.auto_bid: AutoBidClient | None = None
        self.recommendations: RecommendationsClient | None = None
        self.eta: AiEta | None = None
        self.bidder: AutoBidder | None = None
        if settings.feature_auto_bid:
            c = _client(
                settings, "auto_bid", settings.auto_bid_url, settings.auto_bid_key, "FEATURE_AUTO_BID", "AUTO_BID_URL"
            )
            self.clients.append(c)
            self.auto_bid = AutoBidClient(c)
        if settings.feature_ai_recommendations:
            c = _client(
                settings,
                "recommendations",
                settings.ai_recommendations_url,
                settings.ai_recommendations_key,
                "FEATURE_AI_RECOMMENDATIONS",
                "AI_RECOMMENDATIONS_URL",
            )
            self.clients.append(c)
            self.recommendations = RecommendationsClient(c)
        if settings.feature_ai_eta:
            c = _client(settings, "eta", settings.ai_eta_url, settings.ai_eta_key, "FEATURE_AI_ETA", "AI_ETA_URL")
            self.clients.append(c)
            self.eta = AiEta(
                EtaClient(c),
                refresh_seconds=settings.ai_eta_refresh_ms / 1000.0,
                fresh_seconds=settings.ai_eta_fresh_seconds,
            )

    def start(self, supervisor: Supervisor, negotiation: NegotiationService) -> None:
        """Hook auto-bid onto delivered `request:new` events and start the loops."""
        if self.eta is not None:
            supervisor.loop("ai-eta", self.eta.run)
        if self.auto_bid is not None:
            self.bidder = AutoBidder(self.pool, negotiation, self.auto_bid)
            negotiation.publisher.request_listeners.append(self.bidder.on_request_new)
            supervisor.loop("auto-bid", self.bidder.run)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()

    async def ranked(self, snapshot: dict[str, Any], customer_id: str) -> dict[str, Any]:
        """A customer's `request:watch` snapshot with `rank` on every offer (null when not live)
        and `ranking`: "ai" or "builtin" (cheapest first)."""
        offers: list[dict[str, Any]] = snapshot["offers"]
        preferred: list[str] | None = None
        live = recommend.live(offers)
        if self.recommendations is not None and live:
            req = snapshot["request"]
            body = RankOffers(
                customer_id=customer_id,
                request_id=req["id"],
                category=req["category"],
                budget_min_kobo=req["budgetMinKobo"],
                budget_max_kobo=req["budgetMaxKobo"],
                offers=[
                    RankOffer(
                        id=o["id"],
                        vendor_id=o["vendorId"],
                        price_kobo=o["priceKobo"],
                        prep_minutes=o["prepMinutes"],
                        round=o["round"],
                        is_competitive=o["isCompetitive"],
                        over_budget=o["overBudget"],
                        created_at=o["createdAt"],
                    )
                    for o in live
                ],
            )
            try:
                preferred = (await self.recommendations.rank(body)).offer_ids
            except AiUnavailable:
                preferred = None
        source = "ai" if preferred is not None else "builtin"
        RANKINGS.labels(source).inc()
        ranks = recommend.ranks(offers, preferred)
        return {**snapshot, "offers": [{**o, "rank": ranks.get(o["id"])} for o in offers], "ranking": source}


class AutoBidder:
    """Bids for opted-in vendors on new requests; a bounded queue fed by the negotiation
    publisher after each `request:new` is delivered, drained by a few workers."""

    def __init__(self, pool: asyncpg.Pool, negotiation: NegotiationService, client: AutoBidClient) -> None:
        self.pool = pool
        self.negotiation = negotiation
        self.client = client
        self._queue: deque[tuple[n.MealRequest, tuple[str, ...]]] = deque()
        self._wake = asyncio.Event()

    def on_request_new(self, req: n.MealRequest, nearby: tuple[str, ...]) -> None:
        """Called by the publisher; never blocks. Past the bound the request gets no auto-bids."""
        if not nearby:
            return
        if len(self._queue) >= AUTOBID_QUEUE_MAX:
            AUTOBIDS.labels("skipped").inc()
            return
        self._queue.append((req, nearby))
        self._wake.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(_AUTOBID_WORKERS)))

    async def _worker(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            req, nearby = self._queue.popleft()
            try:
                await self.handle(req, nearby)
            except Exception:  # storage away or our bug: this request gets no auto-bid
                log.exception("auto-bid failed", extra={"requestId": req.id})

    async def handle(self, req: n.MealRequest, nearby: tuple[str, ...]) -> None:
        rows = await autobid_db.matching(self.pool, nearby, req.category)
        bids = []
        for row in rows:
            rule = autobid_db.rule_from_row(row)
            seen = autobid.Seen(
                req.category, req.budget_max_kobo, req.delivery_lat, req.delivery_lng, row["lat"], row["lng"]
            )
            km = autobid.match(rule, seen)
            if km is None:
                AUTOBIDS.labels("no_match").inc()
                continue
            bids.append(self._bid(req, row, rule, km))
        await asyncio.gather(*bids)

    async def _bid(self, req: n.MealRequest, row: asyncpg.Record, rule: autobid.Rule, km: float) -> None:
        body = SuggestPrice(
            request=BidRequest(
                id=req.id,
                category=req.category,
                budget_min_kobo=req.budget_min_kobo,
                budget_max_kobo=req.budget_max_kobo,
                delivery=Point(req.delivery_lat, req.delivery_lng),
                notes=req.notes,
                desired_at=iso(req.desired_at),
            ),
            vendor=BidVendor(id=rule.vendor_id, location=Point(row["lat"], row["lng"]), distance_km=round(km, 3)),
            rule=BidRule(category=rule.category, min_price_kobo=rule.min_price_kobo, radius_km=rule.radius_km),
        )
        try:
            suggestion = await self.client.suggest(body)
        except AiUnavailable:
            AUTOBIDS.labels("no_suggestion").inc()
            return
        price = autobid.bid_price(rule, suggestion.price_kobo)
        assert price is not None  # a suggestion always gives a price
        cmd = n.PlaceOffer(
            offer_id=self.negotiation.new_id(),
            vendor_id=rule.vendor_id,
            vendor_name=row["display_name"],
            vendor_verified=row["verified"],
            vendor_lat=row["lat"],
            vendor_lng=row["lng"],
            vendor_km=row["km_service_area"],
            price_kobo=price,
            now=utcnow(),
            details=rule.details,
            prep_minutes=rule.prep_minutes or suggestion.prep_minutes,
        )
        try:
            await self.negotiation.place_offer(req.id, cmd, str(row["user_id"]), _AUTOBID_CLIENT_MSG_ID)
        except EngineError as exc:  # closed meanwhile, already bid by hand, full: nothing to do
            AUTOBIDS.labels(exc.code).inc()
            return
        AUTOBIDS.labels("placed").inc()
