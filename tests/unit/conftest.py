"""Fixtures for the actor runtime tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.runtime.actor import ActorSystem
from tests.unit.actor_support import Journal, register_probes


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
async def system(journal: Journal) -> AsyncIterator[ActorSystem]:
    sys_ = ActorSystem(mailbox_size=100, idle_seconds=60.0, ask_timeout=2.0)
    register_probes(sys_, journal)
    try:
        yield sys_
    finally:
        await sys_.stop()
