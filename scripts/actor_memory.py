"""Memory of idle meal-request actors, as the actor system holds them.

Builds N activated MealRequestActor cells (state as activation leaves it: the request,
its offers, no remembered replies, an armed expiry timer) and measures the traced heap
per actor with tracemalloc. No I/O: the state is what `load` would rebuild.

    python -m scripts.actor_memory --actors 20000 --offers 0 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import tracemalloc
import uuid
from datetime import timedelta
from typing import Any, NoReturn

from engine import negotiation as n
from engine.clock import utcnow
from engine.meal_request_actor import Deps, MealRequestActor
from engine.runtime.actor import ActorSystem


class _Offline:
    """Store, publisher and vendor directory for actors that never do I/O here."""

    def _no_io(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("no I/O in this measurement")

    record = load = events_since = publish = vendors_covering = _no_io


OFFLINE = _Offline()


def _request(offers: int) -> n.MealRequest:
    now = utcnow()
    req, _ = n.create_request(
        n.CreateRequest(
            request_id=str(uuid.uuid4()),
            customer_id=str(uuid.uuid4()),
            category="nigerian",
            budget_min_kobo=200_000,
            budget_max_kobo=500_000,
            delivery_lat=6.5244,
            delivery_lng=3.3792,
            address_line="12 Awolowo Road, Ikoyi, Lagos",
            notes="Extra pepper abeg",
            now=now,
            expires_in_minutes=120,
        )
    )
    for i in range(offers):
        req, _ = n.place_offer(
            req,
            n.PlaceOffer(
                offer_id=str(uuid.uuid4()),
                vendor_id=str(uuid.uuid4()),
                vendor_name=f"Mama Put {i}",
                vendor_verified=True,
                vendor_lat=6.5244,
                vendor_lng=3.3792,
                vendor_km=5.0,
                price_kobo=300_000 + i * 1000,
                details="Jollof, chicken, plantain",
                prep_minutes=30,
                now=now + timedelta(seconds=i),
            ),
        )
    return req


async def measure(actors: int, offers: int) -> float:
    system = ActorSystem(mailbox_size=64, idle_seconds=300, ask_timeout=5)
    deps = Deps(store=OFFLINE, publisher=OFFLINE, vendors=OFFLINE)
    system.register(MealRequestActor.kind, functools.partial(MealRequestActor, deps=deps))
    states = [_request(offers) for _ in range(actors)]  # built first: we measure the actor's share too
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for req in states:
        cell = system._cell(MealRequestActor.kind, req.id)
        actor = cell.actor
        assert isinstance(actor, MealRequestActor)
        actor.req = req
        cell.activated = True
        actor._arm()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    runtime_bytes = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # The state itself (request + offers), measured the same way on fresh copies.
    tracemalloc.start()
    b2 = tracemalloc.take_snapshot()
    copies = [_request(offers) for _ in range(actors)]
    gc.collect()
    a2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    state_bytes = sum(s.size_diff for s in a2.compare_to(b2, "filename"))
    del copies
    await system.stop()
    per_runtime = runtime_bytes / actors
    per_state = state_bytes / actors
    print(f"| {offers} | {per_runtime:,.0f} | {per_state:,.0f} | {per_runtime + per_state:,.0f} |")
    return per_runtime + per_state


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, default=20_000)
    parser.add_argument("--offers", type=int, nargs="+", default=[0, 3])
    args = parser.parse_args()
    print(f"{args.actors} idle meal-request actors; bytes per actor (tracemalloc)\n")
    print("| offers | actor + cell + timer | request state (incl. offers) | total |")
    print("|---|---|---|---|")
    for k in args.offers:
        await measure(args.actors, k)


if __name__ == "__main__":
    asyncio.run(main())
