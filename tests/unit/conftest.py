"""Fixtures for the actor runtime tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine.runtime import actor as runtime
from engine.runtime.actor import ActorSystem
from tests.unit.actor_support import FakeClock, Journal, ManualTimers, register_probes


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


@pytest.fixture
async def timers() -> AsyncIterator[ManualTimers]:
    """Timers armed with delay MANUAL wait for `fire()` instead of the clock (for this test only)."""
    loop = asyncio.get_running_loop()
    manual = ManualTimers(loop)
    loop.call_later = manual.call_later  # type: ignore[method-assign, assignment]
    try:
        yield manual
    finally:
        del loop.call_later  # back to the loop class's own method


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The actor runtime's monotonic clock, moved by hand (`clock.now += seconds`)."""
    fake = FakeClock()
    monkeypatch.setattr(runtime, "time", fake)
    return fake
