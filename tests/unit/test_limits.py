"""engine.limits is the one source of every client-facing bound: the socket schemas and the
negotiation rules accept a value at each bound and refuse one past it, both `invalid`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine import limits
from engine import negotiation as n
from engine.errors import DomainError
from pocho_rt.errors import ApiError
from pocho_rt.sockets import schemas as s
from pocho_rt.validation import convert
from tests.unit.negotiation_support import create_cmd, new_request, place

CREATE = {
    "category": "jollof",
    "budgetMinKobo": 1,
    "budgetMaxKobo": 500_000,
    "deliveryLat": 6.5244,
    "deliveryLng": 3.3792,
    "addressLine": "12 Allen Avenue",
}
PLACE = {"requestId": "r1", "priceKobo": 300_000}
REVISE = {"offerId": "o1", "priceKobo": 300_000}
COUNTER = {"offerId": "o1", "priceKobo": 300_000}

# (schema, base payload, wire field, largest/smallest allowed value, first refused value)
BOUNDS: list[tuple[type, dict[str, Any], str, Any, Any]] = [
    (s.RequestCreate, CREATE, "budgetMaxKobo", limits.MAX_BUDGET_KOBO, limits.MAX_BUDGET_KOBO + 1),
    (s.RequestCreate, CREATE, "budgetMinKobo", 1, 0),
    (s.RequestCreate, CREATE, "category", "c" * limits.CATEGORY_MAX_LENGTH, "c" * (limits.CATEGORY_MAX_LENGTH + 1)),
    (s.RequestCreate, CREATE, "addressLine", "a" * limits.ADDRESS_MAX_LENGTH, "a" * (limits.ADDRESS_MAX_LENGTH + 1)),
    (s.RequestCreate, CREATE, "notes", "n" * limits.NOTES_MAX_LENGTH, "n" * (limits.NOTES_MAX_LENGTH + 1)),
    (s.RequestCreate, CREATE, "expiresInMinutes", limits.EXPIRES_IN_MINUTES_MAX, limits.EXPIRES_IN_MINUTES_MAX + 1),
    (s.RequestCreate, CREATE, "expiresInMinutes", limits.EXPIRES_IN_MINUTES_MIN, limits.EXPIRES_IN_MINUTES_MIN - 1),
    (s.RequestCreate, CREATE, "maxVendorOffers", limits.MAX_VENDOR_OFFERS_MAX, limits.MAX_VENDOR_OFFERS_MAX + 1),
    (s.RequestCreate, CREATE, "maxVendorOffers", limits.MAX_VENDOR_OFFERS_MIN, limits.MAX_VENDOR_OFFERS_MIN - 1),
    (s.OfferPlace, PLACE, "priceKobo", limits.MAX_PRICE_KOBO, limits.MAX_PRICE_KOBO + 1),
    (s.OfferPlace, PLACE, "details", "d" * limits.DETAILS_MAX_LENGTH, "d" * (limits.DETAILS_MAX_LENGTH + 1)),
    (s.OfferPlace, PLACE, "prepMinutes", limits.PREP_MINUTES_MAX, limits.PREP_MINUTES_MAX + 1),
    (s.OfferPlace, PLACE, "prepMinutes", limits.PREP_MINUTES_MIN, limits.PREP_MINUTES_MIN - 1),
    (s.OfferRevise, REVISE, "priceKobo", limits.MAX_PRICE_KOBO, limits.MAX_PRICE_KOBO + 1),
    (s.OfferRevise, REVISE, "details", "d" * limits.DETAILS_MAX_LENGTH, "d" * (limits.DETAILS_MAX_LENGTH + 1)),
    (s.OfferCounter, COUNTER, "priceKobo", limits.MAX_PRICE_KOBO, limits.MAX_PRICE_KOBO + 1),
    (s.OfferCounter, COUNTER, "message", "m" * limits.MESSAGE_MAX_LENGTH, "m" * (limits.MESSAGE_MAX_LENGTH + 1)),
    (s.OfferRef, {}, "offerId", "i" * limits.ID_MAX_LENGTH, "i" * (limits.ID_MAX_LENGTH + 1)),
    (s.OfferRef, {"offerId": "o1"}, "clientMsgId", "c" * limits.ID_MAX_LENGTH, "c" * (limits.ID_MAX_LENGTH + 1)),
]


@pytest.mark.parametrize(
    ("schema", "base", "field", "ok", "bad"), BOUNDS, ids=[f"{b[0].__name__}.{b[2]}={str(b[4])[:12]}" for b in BOUNDS]
)
def test_schema_bounds_come_from_limits(schema: type, base: dict[str, Any], field: str, ok: Any, bad: Any) -> None:
    convert({**base, field: ok}, schema)
    with pytest.raises(ApiError) as info:
        convert({**base, field: bad}, schema)
    assert info.value.code == "invalid" and info.value.details is not None and set(info.value.details) == {field}


def test_schema_defaults_are_the_rules_defaults() -> None:
    c = convert(CREATE, s.RequestCreate)
    assert c.expires_in_minutes == limits.EXPIRES_IN_MINUTES_DEFAULT == create_cmd().expires_in_minutes == 15
    assert c.max_vendor_offers == limits.MAX_VENDOR_OFFERS_DEFAULT == create_cmd().max_vendor_offers == 10


def _create(**kw: Any) -> object:
    return n.create_request(create_cmd(**kw))


def _place(**kw: Any) -> object:
    return place(new_request(), "v1", kw.pop("price_kobo", 300_000), **kw)


# (rule, field, allowed value, first refused value): the rules check the same names
RULE_BOUNDS: list[tuple[Callable[..., object], str, Any, Any]] = [
    (_create, "budget_max_kobo", limits.MAX_BUDGET_KOBO, limits.MAX_BUDGET_KOBO + 1),
    (_create, "category", "c" * limits.CATEGORY_MAX_LENGTH, "c" * (limits.CATEGORY_MAX_LENGTH + 1)),
    (_create, "address_line", "a" * limits.ADDRESS_MAX_LENGTH, "a" * (limits.ADDRESS_MAX_LENGTH + 1)),
    (_create, "notes", "n" * limits.NOTES_MAX_LENGTH, "n" * (limits.NOTES_MAX_LENGTH + 1)),
    (_create, "expires_in_minutes", limits.EXPIRES_IN_MINUTES_MAX, limits.EXPIRES_IN_MINUTES_MAX + 1),
    (_create, "max_vendor_offers", limits.MAX_VENDOR_OFFERS_MAX, limits.MAX_VENDOR_OFFERS_MAX + 1),
    (_place, "price_kobo", limits.MAX_PRICE_KOBO, limits.MAX_PRICE_KOBO + 1),
    (_place, "details", "d" * limits.DETAILS_MAX_LENGTH, "d" * (limits.DETAILS_MAX_LENGTH + 1)),
    (_place, "prep_minutes", limits.PREP_MINUTES_MAX, limits.PREP_MINUTES_MAX + 1),
]


@pytest.mark.parametrize(("rule", "field", "ok", "bad"), RULE_BOUNDS, ids=[b[1] for b in RULE_BOUNDS])
def test_rule_bounds_come_from_limits(rule: Callable[..., object], field: str, ok: Any, bad: Any) -> None:
    rule(**{field: ok})
    with pytest.raises(DomainError) as info:
        rule(**{field: bad})
    assert info.value.code == "invalid"


def test_documented_values() -> None:
    """README "Limits" and PROTOCOL quote these numbers."""
    assert limits.MAX_BUDGET_KOBO == 50_000_000  # NGN 500,000
    assert (limits.MAX_OPEN_REQUESTS, limits.MAX_WATCHED_PER_SOCKET, limits.REMEMBERED_REPLIES) == (10, 50, 32)
    assert (limits.EXPIRES_IN_MINUTES_MIN, limits.EXPIRES_IN_MINUTES_MAX) == (1, 120)
    assert (limits.MAX_VENDOR_OFFERS_MIN, limits.MAX_VENDOR_OFFERS_MAX) == (1, 20)
