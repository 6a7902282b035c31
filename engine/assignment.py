"""What order actors and rider-session actors tell each other (dispatch and tracking).

No actor asks another inside its own turn (an actor waiting on an actor that waits on it
would deadlock): an assignment is sequenced by the order service (ask the rider actor to
`Reserve`, then the order actor to accept it, `Release` on refusal), and everything else
between the two kinds is a `tell`. Actor kinds: "order" keyed by order id, "rider" keyed by
the rider profile id (riders.id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

ORDER_KIND = "order"
RIDER_KIND = "rider"


@dataclass(frozen=True, slots=True)
class AssignmentOffered:
    """order -> rider: this rider was sent `assignment:offer` for the order until `expires_at`."""

    order_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AssignmentWithdrawn:
    """order -> rider: the offer is revoked (timed out, taken, order canceled)."""

    order_id: str


@dataclass(frozen=True, slots=True)
class Reserve:
    """service -> rider (ask): hold this rider for the order. `conflict` when the rider is
    offline or already carries another order; idempotent for the same order."""

    order_id: str


@dataclass(frozen=True, slots=True)
class Release:
    """-> rider: the order no longer holds this rider (refused, delivered, canceled)."""

    order_id: str


@dataclass(frozen=True, slots=True)
class Carrying:
    """order -> rider: the rider is assigned (committed); its pings now go to this order's
    customer as `rider:location`, with an ETA to the drop-off."""

    order_id: str
    dropoff_lat: float
    dropoff_lng: float


@dataclass(frozen=True, slots=True)
class RiderUnavailable:
    """rider -> order: the rider went offline (or its heartbeat lapsed) while offered the order."""

    order_id: str
    rider_id: str


@dataclass(frozen=True, slots=True)
class LastLocation:
    """ask rider: its last accepted position as a `rider:location` payload for the order, or None."""

    order_id: str


@dataclass(frozen=True, slots=True)
class RiderCandidate:
    rider_id: str
    distance_km: float


class RiderDirectory(Protocol):
    """Online riders not carrying an order, found by position (the Redis geo index)."""

    async def available_near(self, lat: float, lng: float, km: float, limit: int) -> list[RiderCandidate]:
        """Nearest first."""
        ...
