"""Declared shapes of every socket command payload (types, ranges, string lengths).

Validation here answers `invalid` with field details before anything reaches an actor;
the negotiation rules re-check relations between fields (e.g. min <= max budget). Every
bound comes from engine.limits, the same names the rules check.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

from engine import limits
from pocho_rt.validation import Schema

Id = Annotated[str, Meta(min_length=1, max_length=limits.ID_MAX_LENGTH)]
ClientMsgId = Annotated[str, Meta(min_length=1, max_length=limits.ID_MAX_LENGTH)]
Budget = Annotated[int, Meta(ge=1, le=limits.MAX_BUDGET_KOBO)]
Price = Annotated[int, Meta(ge=1, le=limits.MAX_PRICE_KOBO)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
Lng = Annotated[float, Meta(ge=-180, le=180)]
When = Annotated[datetime, Meta(tz=True)]
Details = Annotated[str, Meta(max_length=limits.DETAILS_MAX_LENGTH)]
Message = Annotated[str, Meta(max_length=limits.MESSAGE_MAX_LENGTH)]
PrepMinutes = Annotated[int, Meta(ge=limits.PREP_MINUTES_MIN, le=limits.PREP_MINUTES_MAX)]


class RequestCreate(Schema, frozen=True):
    category: Annotated[str, Meta(min_length=1, max_length=limits.CATEGORY_MAX_LENGTH)]
    budget_min_kobo: Budget
    budget_max_kobo: Budget
    delivery_lat: Lat
    delivery_lng: Lng
    address_line: Annotated[str, Meta(min_length=1, max_length=limits.ADDRESS_MAX_LENGTH)]
    notes: Annotated[str, Meta(max_length=limits.NOTES_MAX_LENGTH)] | None = None
    desired_at: When | None = None
    expires_in_minutes: Annotated[int, Meta(ge=limits.EXPIRES_IN_MINUTES_MIN, le=limits.EXPIRES_IN_MINUTES_MAX)] = (
        limits.EXPIRES_IN_MINUTES_DEFAULT
    )
    max_vendor_offers: Annotated[int, Meta(ge=limits.MAX_VENDOR_OFFERS_MIN, le=limits.MAX_VENDOR_OFFERS_MAX)] = (
        limits.MAX_VENDOR_OFFERS_DEFAULT
    )
    client_msg_id: ClientMsgId | None = None


class RequestRef(Schema, frozen=True):
    request_id: Id
    client_msg_id: ClientMsgId | None = None


class RequestWatch(Schema, frozen=True):
    request_id: Id
    since_seq: Annotated[int, Meta(ge=0)] | None = None


class RequestId(Schema, frozen=True):
    request_id: Id


class OfferRef(Schema, frozen=True):
    offer_id: Id
    client_msg_id: ClientMsgId | None = None


class OfferCounter(Schema, frozen=True):
    offer_id: Id
    price_kobo: Price
    message: Message | None = None
    client_msg_id: ClientMsgId | None = None


class OfferPlace(Schema, frozen=True):
    request_id: Id
    price_kobo: Price
    details: Details | None = None
    prep_minutes: PrepMinutes | None = None
    slot_from: When | None = None
    slot_to: When | None = None
    client_msg_id: ClientMsgId | None = None


class OfferRevise(Schema, frozen=True):
    offer_id: Id
    price_kobo: Price
    details: Details | None = None
    prep_minutes: PrepMinutes | None = None
    client_msg_id: ClientMsgId | None = None
