"""Ranks of a customer's live offers in a `request:watch` reply.

The built-in order (the fallback, and what the ML ranking is completed with): cheapest
first, then the earlier offer, then the id. An ML ranking puts the live offers it names
first, in its order; ids it repeats or does not know are ignored, and live offers it left
out follow in the built-in order. Ranks start at 1; offers that are not live get none.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

LIVE: Final = frozenset({"PENDING", "COUNTERED"})


def live(offers: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [o for o in offers if o["status"] in LIVE]


def builtin_order(offers: Iterable[Mapping[str, Any]]) -> list[str]:
    ranked = sorted(live(offers), key=lambda o: (o["priceKobo"], o["createdAt"], o["id"]))
    return [str(o["id"]) for o in ranked]


def ranks(offers: Sequence[Mapping[str, Any]], preferred: Sequence[str] | None = None) -> dict[str, int]:
    """Offer id -> rank (1 = best) for the live offers."""
    fallback = builtin_order(offers)
    known = set(fallback)
    order: list[str] = []
    for offer_id in preferred or ():
        if offer_id in known and offer_id not in order:
            order.append(offer_id)
    taken = set(order)
    order += [i for i in fallback if i not in taken]
    return {offer_id: i for i, offer_id in enumerate(order, start=1)}
