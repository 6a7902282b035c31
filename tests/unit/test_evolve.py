"""The rules' fast copy of frozen state (`engine.state.evolve`) behaves as `dataclasses.replace`."""

from __future__ import annotations

import dataclasses

import pytest

from engine.negotiation_statuses import COUNTERED, PENDING
from engine.state import evolve
from tests.unit.negotiation_support import new_request, offer_of, place_all


def test_evolve_matches_dataclasses_replace() -> None:
    req = place_all(new_request(), ("v1", 300_000))
    offer = offer_of(req, "v1")
    changed = evolve(offer, price_kobo=250_000, status=COUNTERED)
    assert changed == dataclasses.replace(offer, price_kobo=250_000, status=COUNTERED)
    assert offer.price_kobo == 300_000 and offer.status == PENDING  # the original is untouched
    assert evolve(req, seq=req.seq + 1) == dataclasses.replace(req, seq=req.seq + 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.price_kobo = 1  # type: ignore[misc]


def test_evolve_refuses_unknown_fields() -> None:
    with pytest.raises(KeyError):
        evolve(new_request(), no_such_field=1)
