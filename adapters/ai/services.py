"""Typed clients of the three ML services. Wire shapes are camelCase JSON, documented in
docs/AI.md; answers are validated (types and ranges) before anyone sees them."""

from __future__ import annotations

from typing import Annotated

import msgspec

from adapters.ai.client import AiClient

_Kobo = Annotated[int, msgspec.Meta(gt=0, le=100_000_000_00)]
_Minutes = Annotated[float, msgspec.Meta(ge=0, le=24 * 60)]


class _Wire(msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=False):
    """Base of every body and answer: camelCase on the wire, unknown answer fields ignored."""


class Point(_Wire, frozen=True):
    lat: float
    lng: float


# ---------------------------------------------------------------- auto-bid


class BidRequest(_Wire, frozen=True):
    id: str
    category: str
    budget_min_kobo: int
    budget_max_kobo: int
    delivery: Point
    notes: str | None
    desired_at: str | None


class BidVendor(_Wire, frozen=True):
    id: str
    location: Point
    distance_km: float


class BidRule(_Wire, frozen=True):
    category: str
    min_price_kobo: int
    radius_km: float


class SuggestPrice(_Wire, frozen=True):
    request: BidRequest
    vendor: BidVendor
    rule: BidRule


class PriceSuggestion(_Wire, frozen=True):
    price_kobo: _Kobo
    prep_minutes: Annotated[int, msgspec.Meta(ge=1, le=600)] | None = None


class AutoBidClient:
    """POST /v1/suggest-price -> {priceKobo, prepMinutes?}."""

    def __init__(self, client: AiClient) -> None:
        self.client = client

    async def suggest(self, body: SuggestPrice) -> PriceSuggestion:
        return await self.client.post("/v1/suggest-price", body, PriceSuggestion)


# ---------------------------------------------------------------- recommendations


class RankOffer(_Wire, frozen=True):
    id: str
    vendor_id: str
    price_kobo: int
    prep_minutes: int | None
    round: int
    is_competitive: bool
    over_budget: bool
    created_at: str


class RankOffers(_Wire, frozen=True):
    customer_id: str
    request_id: str
    category: str
    budget_min_kobo: int
    budget_max_kobo: int
    offers: list[RankOffer]


class Ranking(_Wire, frozen=True):
    offer_ids: Annotated[list[str], msgspec.Meta(max_length=1000)]


class RecommendationsClient:
    """POST /v1/rank-offers -> {offerIds: [best first]}."""

    def __init__(self, client: AiClient) -> None:
        self.client = client

    async def rank(self, body: RankOffers) -> Ranking:
        return await self.client.post("/v1/rank-offers", body, Ranking)


# ---------------------------------------------------------------- ETA


class EtaQuery(_Wire, frozen=True):
    origin: Point
    destination: Point
    speed_kmh: float | None


class EtaAnswer(_Wire, frozen=True):
    eta_minutes: _Minutes


class EtaClient:
    """POST /v1/eta -> {etaMinutes}."""

    def __init__(self, client: AiClient) -> None:
        self.client = client

    async def eta(self, body: EtaQuery) -> EtaAnswer:
        return await self.client.post("/v1/eta", body, EtaAnswer)
