"""The supervisor owns every background loop: restarts what dies, reports it, stops all."""

from __future__ import annotations

import asyncio

import pytest

from pocho_rt.tasks import LOOP_RESTARTS, Supervisor
from tests.helpers import eventually


async def test_a_loop_that_dies_is_restarted_counted_and_reported() -> None:
    sup = Supervisor()
    runs = 0
    healed = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"boom {runs}")
        healed.set()
        await asyncio.Event().wait()  # then runs for good

    before = LOOP_RESTARTS.labels("flaky-test")._value.get()
    sup.loop("flaky-test", flaky)
    try:
        await asyncio.wait_for(healed.wait(), 10)
        assert runs == 3
        status = sup.status()["flaky-test"]
        assert status["state"] == "running" and status["restarts"] == 2
        assert status["lastError"] == "RuntimeError: boom 2"
        assert sup.healthy()
        assert LOOP_RESTARTS.labels("flaky-test")._value.get() == before + 2
    finally:
        await sup.stop()
    assert sup.status()["flaky-test"]["state"] == "stopped"


async def test_unhealthy_while_a_loop_waits_to_restart() -> None:
    sup = Supervisor()

    async def broken() -> None:
        raise OSError("storage away")

    sup.loop("broken-test", broken)
    try:
        await eventually(lambda: sup.status()["broken-test"]["restarts"] >= 1, what="the first restart")
        assert not sup.healthy()
    finally:
        await sup.stop()


async def test_a_loop_that_returns_has_finished_and_is_not_restarted() -> None:
    sup = Supervisor()
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    sup.loop("once-test", once)
    try:
        await eventually(lambda: sup.status()["once-test"]["state"] == "finished", what="the loop to finish")
        assert runs == 1 and sup.status()["once-test"]["restarts"] == 0 and sup.healthy()
    finally:
        await sup.stop()


async def test_stop_cancels_and_awaits_loops_and_spawned_tasks() -> None:
    sup = Supervisor()
    ended: list[str] = []
    started = {"loop": asyncio.Event(), "spawned": asyncio.Event()}

    async def forever(name: str) -> None:
        try:
            started[name].set()
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    sup.loop("forever-test", lambda: forever("loop"))
    task = sup.spawn(forever("spawned"), name="spawned-test")
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 10)
    await sup.stop()
    assert sorted(ended) == ["loop", "spawned"]
    assert task.cancelled()


async def test_a_loop_name_is_registered_once() -> None:
    sup = Supervisor()

    async def idle() -> None:
        await asyncio.Event().wait()

    sup.loop("twice-test", idle)
    try:
        with pytest.raises(ValueError):
            sup.loop("twice-test", idle)
    finally:
        await sup.stop()
