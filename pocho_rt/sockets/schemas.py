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


# ---------------------------------------------------------------- /rider (issue 7)

Heading = Annotated[float, Meta(ge=0, le=limits.RIDER_HEADING_MAX)]
SpeedKmh = Annotated[float, Meta(ge=0, le=limits.RIDER_SPEED_MAX_KMH)]
AccuracyM = Annotated[float, Meta(ge=0, le=limits.RIDER_ACCURACY_MAX_M)]
RiderStatus = Annotated[str, Meta(pattern="^(PICKED_UP|OUT_FOR_DELIVERY|DELIVERED)$")]
DeliveryCode = Annotated[str, Meta(min_length=1, max_length=limits.ID_MAX_LENGTH)]


class RiderOnline(Schema, frozen=True):
    lat: Lat
    lng: Lng
    client_msg_id: ClientMsgId | None = None


class RiderOffline(Schema, frozen=True):
    client_msg_id: ClientMsgId | None = None


class RiderLocation(Schema, frozen=True):
    """A `location` ping; `engine.tracking.validate` adds the time window."""

    lat: Lat
    lng: Lng
    recorded_at: When
    heading: Heading | None = None
    speed_kmh: SpeedKmh | None = None
    accuracy_m: AccuracyM | None = None


class RiderAssignment(Schema, frozen=True):
    """`assignment:accept` / `assignment:decline`."""

    order_id: Id
    client_msg_id: ClientMsgId | None = None


class RiderOrderUpdate(Schema, frozen=True):
    order_id: Id
    status: RiderStatus
    delivery_code: DeliveryCode | None = None
    client_msg_id: ClientMsgId | None = None


# ---------------------------------------------------------------- orders (issue 7)

Reason = Annotated[str, Meta(min_length=1, max_length=limits.REASON_MAX_LENGTH)]
VendorOrderStatus = Annotated[str, Meta(pattern="^(PREPARING|READY|CANCELED)$")]
OrderEta = Annotated[int, Meta(ge=limits.ORDER_ETA_MINUTES_MIN, le=limits.ORDER_ETA_MINUTES_MAX)]


class OrderWatch(Schema, frozen=True):
    order_id: Id
    since_seq: Annotated[int, Meta(ge=0)] | None = None


class OrderCancel(Schema, frozen=True):
    order_id: Id
    reason: Reason
    client_msg_id: ClientMsgId | None = None


class OrderRate(Schema, frozen=True):
    order_id: Id
    rating: Annotated[int, Meta(ge=limits.RATING_MIN, le=limits.RATING_MAX)]
    comment: Annotated[str, Meta(max_length=limits.REVIEW_COMMENT_MAX_LENGTH)] | None = None
    client_msg_id: ClientMsgId | None = None


class VendorOrderUpdate(Schema, frozen=True):
    """/vendor `order:update`; `reason` is required with CANCELED (the rule says so)."""

    order_id: Id
    status: VendorOrderStatus
    eta_minutes: OrderEta | None = None
    reason: Reason | None = None
    client_msg_id: ClientMsgId | None = None
