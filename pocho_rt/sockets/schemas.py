"""Declared shapes of every socket command payload (types, ranges, string lengths).

Validation here answers `invalid` with field details before anything reaches an actor;
the negotiation rules re-check relations between fields (e.g. min <= max budget).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

from pocho_rt.validation import Schema

Id = Annotated[str, Meta(min_length=1, max_length=64)]
ClientMsgId = Annotated[str, Meta(min_length=1, max_length=64)]
Kobo = Annotated[int, Meta(ge=1, le=100_000_000)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
Lng = Annotated[float, Meta(ge=-180, le=180)]
When = Annotated[datetime, Meta(tz=True)]
Text500 = Annotated[str, Meta(max_length=500)]


class RequestCreate(Schema, frozen=True):
    category: Annotated[str, Meta(min_length=1, max_length=64)]
    budget_min_kobo: Kobo
    budget_max_kobo: Kobo
    delivery_lat: Lat
    delivery_lng: Lng
    address_line: Annotated[str, Meta(min_length=1, max_length=256)]
    notes: Annotated[str, Meta(max_length=1000)] | None = None
    desired_at: When | None = None
    expires_in_minutes: Annotated[int, Meta(ge=1, le=120)] = 15
    max_vendor_offers: Annotated[int, Meta(ge=1, le=20)] = 10
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
    price_kobo: Kobo
    message: Text500 | None = None
    client_msg_id: ClientMsgId | None = None


class OfferPlace(Schema, frozen=True):
    request_id: Id
    price_kobo: Kobo
    details: Text500 | None = None
    prep_minutes: Annotated[int, Meta(ge=1, le=600)] | None = None
    slot_from: When | None = None
    slot_to: When | None = None
    client_msg_id: ClientMsgId | None = None


class OfferRevise(Schema, frozen=True):
    offer_id: Id
    price_kobo: Kobo
    details: Text500 | None = None
    prep_minutes: Annotated[int, Meta(ge=1, le=600)] | None = None
    client_msg_id: ClientMsgId | None = None
