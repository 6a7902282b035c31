"""What the notification hook (issue 10) adds to a negotiation write: the time
`persistence.notifications.negotiation_rows` takes for an offer revision (the hot path: no
notification) and for a new offer (one outbox row), best of 7 rounds.

    python -m scripts.bench_notify_rows
"""

from __future__ import annotations

import timeit
import uuid

from engine import negotiation as n
from engine.ports import NegotiationChange
from persistence.notifications import negotiation_rows
from tests.unit.negotiation_support import T0, new_request, place

ROUNDS, NUMBER = 7, 20_000


def main() -> None:
    vendor = str(uuid.uuid4())
    placed, events = place(new_request(), vendor, 300_000)
    offer_id = events[0].payload["offer"]["id"]
    revise = n.ReviseOffer(
        offer_id=offer_id, vendor_id=vendor, price_kobo=290_000, details=None, prep_minutes=None, now=T0
    )
    revised, revise_events = n.revise_offer(placed, revise)
    cases = {
        "offer:updated (no row)": NegotiationChange(revised, 1, [], revise_events),
        "offer:new (one row)": NegotiationChange(placed, 1, [], events),
    }
    for name, change in cases.items():
        best = min(timeit.repeat(lambda c=change: negotiation_rows(c), number=NUMBER, repeat=ROUNDS))
        print(f"{name}: {best / NUMBER * 1e6:.2f} us")


if __name__ == "__main__":
    main()
