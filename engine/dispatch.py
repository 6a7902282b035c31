"""Pure dispatch policy: which rider an order offers itself to next, and when.

One rider at a time: an order offers itself to the nearest eligible rider for
`offer_ttl`; a decline, a timeout or the rider going offline puts that rider on the
order's skip list and the search runs again at once. A search tries the radii of
`RADII_KM` in turn (3, 6, 10, 20 km around the vendor: a near rider is offered before a
far one is ever looked at) and takes the nearest rider not skipped; when none is found at
20 km it waits `retry` and starts again from 3 km (riders come online and finish
deliveries all the time). The search itself is I/O (the order actor queries the
`RiderDirectory` with `RADII_KM` and `search_limit`); everything decided here is pure.

State is one frozen `Dispatch` value kept in the order. No clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.assignment import RiderCandidate

RADII_KM: tuple[float, ...] = (3.0, 6.0, 10.0, 20.0)
SEARCH_LIMIT = 20  # candidates asked for per radius, on top of the skipped riders
MAX_SKIPPED = 200  # riders remembered as declined per order; the oldest is forgotten past this

# Delivery fee shown in `assignment:offer`: a base plus a rate per km of the trip, rounded up
# to whole naira. Until pricing has its own issue this is the server's documented choice.
FEE_BASE_KOBO = 50_000  # NGN 500
FEE_PER_KM_KOBO = 10_000  # NGN 100


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Where an order's search for a rider stands.

    `retry_at` None means no search is planned (not paid yet, assigned, or finished).
    """

    offered_rider_id: str | None = None
    offer_expires_at: datetime | None = None
    skipped: tuple[str, ...] = ()  # declined, timed out or went offline while offered
    retry_at: datetime | None = None
    offers_made: int = 0


IDLE = Dispatch()


def start(d: Dispatch, now: datetime) -> Dispatch:
    """The order needs a rider from now on: search at once."""
    return Dispatch(skipped=d.skipped, retry_at=now, offers_made=d.offers_made)


def search_limit(d: Dispatch) -> int:
    """How many candidates to ask for so that skipped riders cannot fill the whole answer."""
    return SEARCH_LIMIT + len(d.skipped)


def search_due(d: Dispatch, now: datetime) -> bool:
    return d.offered_rider_id is None and d.retry_at is not None and now >= d.retry_at


def pick(candidates: Sequence[RiderCandidate], d: Dispatch) -> RiderCandidate | None:
    """The nearest candidate not skipped for this order (candidates come nearest first)."""
    for c in sorted(candidates, key=lambda c: c.distance_km):
        if c.rider_id not in d.skipped and c.rider_id != d.offered_rider_id:
            return c
    return None


def offer(d: Dispatch, rider_id: str, now: datetime, ttl: timedelta) -> Dispatch:
    return Dispatch(
        offered_rider_id=rider_id,
        offer_expires_at=now + ttl,
        skipped=d.skipped,
        retry_at=None,
        offers_made=d.offers_made + 1,
    )


def nobody(d: Dispatch, now: datetime, retry: timedelta) -> Dispatch:
    """No eligible rider within the largest radius: search again after `retry`."""
    return Dispatch(skipped=d.skipped, retry_at=now + retry, offers_made=d.offers_made)


def skip(d: Dispatch, rider_id: str, now: datetime) -> Dispatch:
    """The offered rider declined, timed out or went offline: never again for this order;
    search for the next one at once."""
    skipped = (*d.skipped, rider_id)[-MAX_SKIPPED:]
    return Dispatch(skipped=skipped, retry_at=now, offers_made=d.offers_made)


def offer_expired(d: Dispatch, now: datetime) -> bool:
    return d.offered_rider_id is not None and d.offer_expires_at is not None and now >= d.offer_expires_at


def stop(d: Dispatch) -> Dispatch:
    """Assigned or finished: nothing offered, nothing planned (the skip list stays as history)."""
    return Dispatch(skipped=d.skipped, offers_made=d.offers_made)


def next_due(d: Dispatch) -> datetime | None:
    """When dispatch needs the order's attention next: the offer's expiry or the next search."""
    return d.offer_expires_at if d.offered_rider_id is not None else d.retry_at


def delivery_fee_kobo(trip_km: float) -> int:
    """Base plus per-km rate, rounded up to whole naira (100 kobo)."""
    raw = FEE_BASE_KOBO + FEE_PER_KM_KOBO * max(trip_km, 0.0)
    return int(math.ceil(raw / 100) * 100)
