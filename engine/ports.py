"""The small interfaces through which the engine and the server reach the outside world.

Adapters (`adapters/`) and persistence implement these; nothing here does I/O itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from engine.negotiation import Event, MealRequest, NewOrder, Offer


class SmsSender(Protocol):
    """Sends one text message (phone verification codes, order notices)."""

    async def send(self, phone: str, body: str, *, user_id: str | None, kind: str) -> None: ...


class PushSender(Protocol):
    """Sends one push notification to one device token (adapters.fcm).

    Returns the provider's message id; raises adapters.delivery.DeliveryError whose kind says
    whether to retry, give up, or delete the device token."""

    async def send(self, token: str, title: str, body: str, data: Mapping[str, str]) -> str: ...


class UserPresence(Protocol):
    """Which users have a live socket (they already got the socket event: no push for them).
    Asked by the notification dispatcher; today this node's sockets (pocho_rt.notify_service)."""

    async def online(self, user_ids: Collection[str]) -> set[str]: ...


class SearchIndex(Protocol):
    """Typo-tolerant search over verified vendors and available menu items."""

    async def search(self, q: str, lat: float | None, lng: float | None, limit: int) -> dict[str, list[dict[str, Any]]]:
        """{"vendors": [...], "menuItems": [...]} ranked by relevance (and distance when given)."""
        ...

    async def upsert(self, entity: str, docs: list[dict[str, Any]]) -> None: ...

    async def delete(self, entity: str, ids: list[str]) -> None: ...


# ---------------------------------------------------------------- negotiation


@dataclass(slots=True)
class NegotiationChange:
    """What one command changed on a meal request, written in one group commit."""

    request: MealRequest
    offer_count: int
    offers: list[Offer]
    events: list[Event]
    order: NewOrder | None = None
    reply: tuple[str, str, Any] | None = None  # (user id, clientMsgId, ack data)
    # Each event's payload as JSON, encoded once by the store and reused by the publisher.
    payload_json: list[str] | None = None
    # Vendors covering the delivery point when the request was created (notifications, issue 10).
    nearby: tuple[str, ...] = ()


@dataclass(slots=True)
class Loaded:
    """A meal request as stored, plus the replies remembered for clientMsgId retries."""

    request: MealRequest
    replies: dict[tuple[str, str], Any]


class NegotiationStore(Protocol):
    def record(self, change: NegotiationChange, after: asyncio.Future[None] | None) -> asyncio.Future[None]:
        """Queue the change for group commit; the future resolves when it is durable.

        `after` is the same actor's previous write: if it failed, this one fails unwritten.
        Raises EngineError("unavailable") when storage is too far behind."""
        ...

    async def load(self, request_id: str, reply_limit: int) -> Loaded | None: ...

    async def events_since(self, request_id: str, since_seq: int, limit: int) -> list[dict[str, Any]]: ...


class Publisher(Protocol):
    """Delivers committed events to their audiences (sockets, geo index)."""

    def publish(self, change: NegotiationChange, nearby: tuple[str, ...]) -> None: ...


class VendorDirectory(Protocol):
    async def vendors_covering(self, lat: float, lng: float) -> tuple[str, ...]:
        """Ids of verified vendors whose own service radius covers the point."""
        ...


# ---------------------------------------------------------------- payments (issue 8)


class ProviderError(Exception):
    """A payment provider call that did not give an answer we can use. `kind`: `unavailable`
    (network, timeout, 5xx: try again later), `invalid_key` (our secret key was refused),
    `not_found` (no such transaction / account), `rejected` (the provider refused the request)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Split:
    """A split payment: the vendor's subaccount at this provider and the platform's commission."""

    subaccount: str
    commission_kobo: int


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    reference: str
    amount_kobo: int
    email: str
    customer_name: str
    order_id: str
    split: Split | None = None


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    provider_refund_id: str | None
    status: str  # the provider's own word: pending, processed, completed...


class PaymentProvider(Protocol):
    """One payment provider's API (adapters.paystack, adapters.flutterwave)."""

    name: str  # PAYSTACK or FLUTTERWAVE

    async def initialize(self, req: CheckoutRequest) -> str:
        """Create the checkout; return the URL the customer pays at."""
        ...

    async def verify(self, reference: str, tx_id: str | None) -> Any:
        """The transaction as the provider's verify API reports it: an engine.payments.Verified."""
        ...

    async def refund(self, reference: str, tx_id: str | None, amount_kobo: int, reason: str) -> ProviderRefund: ...

    async def resolve_account(self, bank_code: str, account_number: str) -> str:
        """The account holder's name (ProviderError `not_found` for an account that does not resolve)."""
        ...

    async def create_subaccount(
        self, business_name: str, bank_code: str, account_number: str, commission_bps: int, phone: str
    ) -> str:
        """The provider's code of a new subaccount for this bank account."""
        ...

    async def close(self) -> None: ...
