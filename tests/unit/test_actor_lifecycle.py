"""The actor runtime (engine/runtime/actor.py): activation and passivation, timers,
commit-gated replies, cancellation and metrics. Probe actors: tests/unit/actor_support.py.

Tests wait on state, never on how far a task got in some number of loop turns."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from engine.errors import EngineError
from engine.runtime.actor import ActorSystem, Pending
from tests.helpers import eventually
from tests.unit.actor_support import (
    MANUAL,
    METERED,
    PROBE,
    STOPPED,
    FakeClock,
    Journal,
    ManualTimers,
    Op,
    has_queued,
    register_probes,
    sample,
    spawn,
    wait_event,
)

# ---------------------------------------------------------------- activation and passivation


async def test_activation_once_then_again_after_passivation(system: ActorSystem, journal: Journal) -> None:
    assert system.get(PROBE, "p") is None
    for i in range(3):
        await system.ask(PROBE, "p", Op(i))
    assert journal.activations["p"] == 1
    assert system.get(PROBE, "p") is not None
    assert system.passivate(PROBE, "p") is True
    assert journal.passivations["p"] == 1
    assert system.get(PROBE, "p") is None and system.live(PROBE) == []
    assert system.passivate(PROBE, "p") is False  # already gone
    await system.ask(PROBE, "p", Op("back"))
    await system.ask(PROBE, "p", Op("still"))
    assert journal.activations["p"] == 2


async def test_failed_activation_fails_the_message_and_retries(system: ActorSystem, journal: Journal) -> None:
    journal.fail_next_activation.add("fa")
    with pytest.raises(EngineError) as err:
        await system.ask(PROBE, "fa", Op("first"))
    assert err.value.code == "unavailable"
    assert journal.handled("fa") == []
    assert await system.ask(PROBE, "fa", Op("second")) == ("fa", "second")
    assert journal.activations["fa"] == 2


async def test_reset_reloads_on_next_message(system: ActorSystem, journal: Journal) -> None:
    await system.ask(PROBE, "r", Op(1))
    actor = system.get(PROBE, "r")
    assert actor is not None
    actor.reset()
    await system.ask(PROBE, "r", Op(2))
    assert journal.activations["r"] == 2
    assert system.get(PROBE, "r") is actor  # same actor object, state reloaded


async def test_passivation_refuses_busy_or_writing_actors(system: ActorSystem, journal: Journal) -> None:
    assert system.passivate(PROBE, "nobody") is False
    gate, entered = asyncio.Event(), asyncio.Event()
    busy = spawn(system.ask(PROBE, "x", Op("busy", entered=entered, gate=gate)))
    await wait_event(entered)
    assert system.passivate(PROBE, "x") is False  # handling a message
    system.tell(PROBE, "x", Op("queued"))
    assert system.passivate(PROBE, "x") is False
    gate.set()
    await busy
    await eventually(lambda: journal.handled("x") == ["busy", "queued"])

    journal.writes_in_flight.add("x")  # idle() is False: writes not committed yet
    assert system.passivate(PROBE, "x") is False
    assert system.get(PROBE, "x") is not None and journal.passivations["x"] == 0
    journal.writes_in_flight.discard("x")
    assert system.passivate(PROBE, "x") is True
    assert journal.passivations["x"] == 1


async def test_passivate_idle_drops_only_long_idle_actors(journal: Journal, clock: FakeClock) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=60.0, ask_timeout=2.0)
    register_probes(sys_, journal)
    try:
        await sys_.ask(PROBE, "old", Op(1))
        await sys_.ask(PROBE, "writing", Op(1))
        journal.writes_in_flight.add("writing")
        clock.now += 59.0
        assert sys_.passivate_idle() == 0  # used 59 s ago: not idle long enough
        assert {a.id for a in sys_.live(PROBE)} == {"old", "writing"}
        await sys_.ask(PROBE, "fresh", Op(1))
        clock.now += 2.0
        assert sys_.passivate_idle() == 1  # old: 61 s; fresh: 2 s
        assert sys_.get(PROBE, "old") is None
        assert sys_.get(PROBE, "fresh") is not None
        assert sys_.get(PROBE, "writing") is not None  # idle() False: kept although idle for long
        assert journal.passivations == Counter({"old": 1})
    finally:
        await sys_.stop()


async def test_sweeper_passivates_idle_actors(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=0.05, ask_timeout=2.0)
    register_probes(sys_, journal)
    sweeper = asyncio.get_running_loop().create_task(sys_.run_passivation())
    try:
        await sys_.ask(PROBE, "s", Op(1))
        assert sys_.get(PROBE, "s") is not None
        await eventually(lambda: sys_.get(PROBE, "s") is None)
        assert journal.passivations["s"] == 1
        assert await sys_.ask(PROBE, "s", Op(2)) == ("s", 2)
        assert journal.activations["s"] == 2
    finally:
        sweeper.cancel()
        await sys_.stop()


async def test_stop_passivates_every_actor(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=60.0, ask_timeout=2.0)
    register_probes(sys_, journal)
    for i in range(3):
        await sys_.ask(STOPPED, f"z{i}", Op(i))
    await sys_.stop()
    assert journal.passivations == Counter({"z0": 1, "z1": 1, "z2": 1})
    assert sys_.live() == []


async def test_stop_resets_the_live_actor_gauge(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=60.0, ask_timeout=2.0)
    register_probes(sys_, journal)
    before = sample("pocho_actors_live", {"kind": STOPPED})
    for i in range(3):
        await sys_.ask(STOPPED, f"g{i}", Op(i))
    assert sample("pocho_actors_live", {"kind": STOPPED}) == before + 3
    await sys_.stop()
    assert sample("pocho_actors_live", {"kind": STOPPED}) == before


# ---------------------------------------------------------------- timers


async def test_schedule_delivers_a_message_to_the_actor(system: ActorSystem, journal: Journal) -> None:
    ticked = asyncio.Event()
    tick = Op("tick", done=ticked)
    started = time.monotonic()
    assert await system.ask(PROBE, "tm", Op("arm", schedule=(0.03, tick))) == ("tm", "arm")
    await wait_event(ticked)
    assert time.monotonic() - started >= 0.025  # not before its delay
    assert journal.handled("tm") == ["arm", "tick"]
    assert journal.activations["tm"] == 1


async def test_timer_after_passivation_reactivates_the_actor(
    system: ActorSystem, journal: Journal, timers: ManualTimers
) -> None:
    ticked = asyncio.Event()
    await system.ask(PROBE, "tp", Op("arm", schedule=(MANUAL, Op("tick", done=ticked))))
    assert system.passivate(PROBE, "tp") is True  # the probe does not cancel its timers
    [timer] = timers.armed
    timer.fire()
    await wait_event(ticked)
    assert journal.activations["tp"] == 2


# ---------------------------------------------------------------- commit-gated replies


async def test_pending_reply_resolves_only_after_commit(system: ActorSystem, journal: Journal) -> None:
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    handled = asyncio.Event()
    asked = spawn(system.ask(PROBE, "pc", Op("write", reply=Pending(commit, "acked"), done=handled)))
    await wait_event(handled)  # handled: its answer is a Pending
    # the actor is free for its next message while the write is in flight
    assert await system.ask(PROBE, "pc", Op("next")) == ("pc", "next")
    assert journal.handled("pc") == ["write", "next"]
    assert not asked.done()
    commit.set_result(None)
    assert await asyncio.wait_for(asked, 1.0) == "acked"


async def test_pending_reply_already_committed(system: ActorSystem) -> None:
    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    commit.set_result(None)
    assert await system.ask(PROBE, "pd", Op("w", reply=Pending(commit, 42))) == 42


@pytest.mark.parametrize("failure", ["exception", "cancelled", "engine_error"])
async def test_pending_reply_fails_unavailable_when_commit_fails(system: ActorSystem, failure: str) -> None:
    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handled = asyncio.Event()
    asked = spawn(system.ask(PROBE, "pf", Op("write", reply=Pending(commit, "acked"), done=handled)))
    await wait_event(handled)
    assert not asked.done()
    if failure == "exception":
        commit.set_exception(ConnectionResetError("lost"))
    elif failure == "cancelled":
        commit.cancel()
    else:
        commit.set_exception(EngineError("unavailable", "write rejected"))
    with pytest.raises(EngineError) as err:
        await asyncio.wait_for(asked, 1.0)
    assert err.value.code == "unavailable"
    assert await system.ask(PROBE, "pf", Op("next")) == ("pf", "next")


async def test_pending_reply_times_out_if_commit_never_comes(system: ActorSystem) -> None:
    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with pytest.raises(EngineError) as err:
        await system.ask(PROBE, "pt", Op("w", reply=Pending(commit, 1)), timeout=0.05)
    assert err.value.code == "timeout"
    late = asyncio.Event()
    commit.set_result(None)  # a late commit does not blow up
    commit.add_done_callback(lambda _: late.set())  # runs after the runtime's own callback
    await wait_event(late)
    assert await system.ask(PROBE, "pt", Op("next")) == ("pt", "next")


# ---------------------------------------------------------------- cancellation


async def test_cancelled_asker_mid_drain_does_not_wedge_the_actor(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    drainer = spawn(system.ask(PROBE, "w", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)  # drainer runs head's handler in its own coroutine
    waiting = [spawn(system.ask(PROBE, "w", Op(i))) for i in range(3)]
    await eventually(has_queued(system, 3))
    drainer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drainer
    # the queued askers are answered by a drain of the runtime's own
    assert await asyncio.wait_for(asyncio.gather(*waiting), 2.0) == [("w", 0), ("w", 1), ("w", 2)]
    assert await system.ask(PROBE, "w", Op("later")) == ("w", "later")
    assert journal.max_running["w"] == 1
    assert system.passivate(PROBE, "w") is True  # not left marked as draining


async def test_cancelled_queued_asker_is_skipped(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    head = spawn(system.ask(PROBE, "k", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)
    gone = spawn(system.ask(PROBE, "k", Op("gone")))
    kept = spawn(system.ask(PROBE, "k", Op("kept")))
    await eventually(has_queued(system, 2))
    gone.cancel()
    gate.set()
    assert await head == ("k", "head")
    assert await kept == ("k", "kept")
    assert gone.cancelled()
    assert journal.handled("k") == ["head", "kept"]


# ---------------------------------------------------------------- metrics


async def test_live_actor_activation_and_mailbox_metrics_move(system: ActorSystem) -> None:
    labels = {"kind": METERED}
    live0 = sample("pocho_actors_live", labels)
    act0 = sample("pocho_actor_activations_total", labels)
    pas0 = sample("pocho_actor_passivations_total", labels)
    handled0 = sample("pocho_actor_handle_seconds_count", labels)

    for i in range(4):
        await system.ask(METERED, f"m{i}", Op(i))
    await system.ask(METERED, "m0", Op("again"))
    assert sample("pocho_actors_live", labels) == live0 + 4
    assert sample("pocho_actor_activations_total", labels) == act0 + 4
    assert sample("pocho_actor_handle_seconds_count", labels) == handled0 + 5

    gate, entered = asyncio.Event(), asyncio.Event()
    head = spawn(system.ask(METERED, "m1", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)
    system.tell(METERED, "m1", Op("q1"))
    system.tell(METERED, "m1", Op("q2"))
    assert sample("pocho_actor_mailbox_depth", labels) == 2
    gate.set()
    await head
    await eventually(lambda: sample("pocho_actor_mailbox_depth", labels) == 0)

    assert system.passivate(METERED, "m2") is True
    assert sample("pocho_actors_live", labels) == live0 + 3
    assert sample("pocho_actor_passivations_total", labels) == pas0 + 1
    await system.ask(METERED, "m2", Op("back"))
    assert sample("pocho_actor_activations_total", labels) == act0 + 5
    assert sample("pocho_actors_live", labels) == live0 + 4
    for i in range(4):
        assert system.passivate(METERED, f"m{i}") is True
    assert sample("pocho_actors_live", labels) == live0
