"""The actor runtime (engine/runtime/actor.py): turn-based mailboxes, backpressure, timeouts
and failures. Probe actors and helpers: tests/unit/actor_support.py.

Tests wait on state, never on how far a task got in some number of loop turns; ask
timeouts whose moment matters are manual timers the test fires."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.errors import EngineError
from engine.runtime.actor import ActorSystem, Pending
from tests.helpers import eventually
from tests.unit.actor_support import (
    MANUAL,
    PROBE,
    Journal,
    ManualTimers,
    Op,
    has_queued,
    queued,
    raises_at_once,
    register_probes,
    sample,
    spawn,
    wait_event,
)

# ---------------------------------------------------------------- turn-based execution


async def test_one_message_at_a_time_per_actor(system: ActorSystem, journal: Journal) -> None:
    replies = await asyncio.gather(*(system.ask(PROBE, "a", Op(n)) for n in range(20)))
    assert replies == [("a", n) for n in range(20)]
    assert journal.max_running["a"] == 1
    # strictly enter/exit pairs of the same message, never two enters in a row
    events = [(kind, tag) for kind, aid, tag in journal.events if aid == "a"]
    assert events == [ev for n in range(20) for ev in (("enter", n), ("exit", n))]


async def test_a_handler_that_awaits_does_not_interleave(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    first = spawn(system.ask(PROBE, "a", Op("slow", entered=entered, gate=gate)))
    await wait_event(entered)
    second = spawn(system.ask(PROBE, "a", Op("fast")))
    await eventually(has_queued(system, 1))  # the ask enqueues when its task first runs
    system.tell(PROBE, "a", Op("told"))
    # another actor's whole round trip runs meanwhile; "a" still holds its queued messages
    assert await system.ask(PROBE, "b", Op("other")) == ("b", "other")
    assert journal.handled("a") == [] and queued(system) == 2
    assert not second.done()
    gate.set()
    assert await first == ("a", "slow")
    assert await second == ("a", "fast")
    await eventually(lambda: len(journal.handled("a")) == 3)
    assert journal.handled("a") == ["slow", "fast", "told"]
    assert journal.max_running["a"] == 1


async def test_many_actors_run_concurrently(system: ActorSystem, journal: Journal) -> None:
    n = 50
    gates = [asyncio.Event() for _ in range(n)]
    entered = [asyncio.Event() for _ in range(n)]
    asks = [spawn(system.ask(PROBE, f"c{i}", Op(i, entered=entered[i], gate=gates[i]))) for i in range(n)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in entered)), 2.0)
    # every handler is inside its message at the same time
    assert sum(journal.running[f"c{i}"] for i in range(n)) == n
    for g in gates:
        g.set()
    assert await asyncio.gather(*asks) == [(f"c{i}", i) for i in range(n)]


async def test_fifo_order_per_actor(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    head = spawn(system.ask(PROBE, "f", Op(-1, entered=entered, gate=gate)))
    await wait_event(entered)
    asks: list[asyncio.Task[Any]] = []
    for i in range(60):
        if i % 3 == 0:
            asks.append(spawn(system.ask(PROBE, "f", Op(i))))
            await eventually(has_queued(system, i + 1))  # enqueued before the next message
        else:
            system.tell(PROBE, "f", Op(i))
    # another actor's traffic does not disturb the order
    other = await system.ask(PROBE, "g", Op("x"))
    assert other == ("g", "x")
    gate.set()
    await head
    await asyncio.gather(*asks)
    await eventually(lambda: len(journal.handled("f")) == 61)
    assert journal.handled("f") == [-1, *range(60)]


# ---------------------------------------------------------------- timeouts and backpressure


async def test_ask_timeout_and_the_actor_keeps_working(
    system: ActorSystem, journal: Journal, timers: ManualTimers
) -> None:
    never, entered = asyncio.Event(), asyncio.Event()
    stuck = spawn(system.ask(PROBE, "t", Op("stuck", entered=entered, gate=never), timeout=MANUAL))
    await wait_event(entered)
    [timer] = timers.armed
    timer.fire()  # the deadline passes while the handler waits for a gate that never opens
    with pytest.raises(EngineError) as err:
        await asyncio.wait_for(stuck, 2.0)
    assert err.value.code == "unavailable"  # cut short before it handed anything over: not applied
    assert journal.running["t"] == 0  # its handler was cut short, not left running
    assert await system.ask(PROBE, "t", Op("next")) == ("t", "next")
    assert await system.ask(PROBE, "t", Op("again"), timeout=0.5) == ("t", "again")
    assert journal.max_running["t"] == 1


async def test_ask_timeout_while_queued_skips_the_message(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    head = spawn(system.ask(PROBE, "q", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)
    with pytest.raises(EngineError) as err:
        await system.ask(PROBE, "q", Op("gave-up"), timeout=0.05)
    assert err.value.code == "unavailable"  # never handled: not applied
    gate.set()
    assert await head == ("q", "head")
    assert await system.ask(PROBE, "q", Op("after")) == ("q", "after")
    assert journal.handled("q") == ["head", "after"]  # the abandoned message was never handled


async def test_ask_timing_out_while_its_write_commits_is_timeout(
    system: ActorSystem, journal: Journal, timers: ManualTimers
) -> None:
    """The handler handed a write over (a Pending reply): past the deadline the outcome is not known."""
    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asker = spawn(system.ask(PROBE, "w", Op("w", reply=Pending(commit, "done")), timeout=MANUAL))
    await eventually(lambda: journal.handled("w") == ["w"])  # the handler returned its Pending
    [deadline] = timers.armed
    deadline.fire()
    with pytest.raises(EngineError) as err:
        await asyncio.wait_for(asker, 2.0)
    assert err.value.code == "timeout"
    commit.set_result(None)


async def test_ask_timing_out_during_its_handler_does_not_break_the_drainer(
    system: ActorSystem, timers: ManualTimers
) -> None:
    gate_c, entered_c = asyncio.Event(), asyncio.Event()
    c = spawn(system.ask(PROBE, "d", Op("c", entered=entered_c, gate=gate_c), timeout=5.0))
    await wait_event(entered_c)  # c handles its own message in its own coroutine
    gate_a, entered_a = asyncio.Event(), asyncio.Event()
    a = spawn(system.ask(PROBE, "d", Op("a", entered=entered_a, gate=gate_a), timeout=MANUAL))
    await eventually(has_queued(system, 1))
    gate_c.set()
    await wait_event(entered_a)  # a's handler runs in a drain that is not a's own
    [a_deadline] = timers.armed
    a_deadline.fire()
    with pytest.raises(EngineError) as err:
        await asyncio.wait_for(a, 2.0)
    assert err.value.code == "timeout"  # its handler goes on (another asker's drain): outcome unknown
    gate_a.set()
    assert await asyncio.wait_for(c, 2.0) == ("d", "c")
    assert await system.ask(PROBE, "d", Op("after")) == ("d", "after")


async def test_an_answered_asker_is_not_held_by_later_messages(system: ActorSystem, timers: ManualTimers) -> None:
    gate_a, entered_a = asyncio.Event(), asyncio.Event()
    a = spawn(system.ask(PROBE, "h", Op("a", entered=entered_a, gate=gate_a), timeout=MANUAL))
    await wait_event(entered_a)
    gate_b, entered_b = asyncio.Event(), asyncio.Event()
    b = spawn(system.ask(PROBE, "h", Op("b", entered=entered_b, gate=gate_b), timeout=5.0))
    await eventually(has_queued(system, 1))
    gate_a.set()
    await wait_event(entered_b)
    try:
        assert await asyncio.wait_for(a, 2.0) == ("h", "a")  # answered: must not wait for b
        [a_deadline] = timers.armed
        a_deadline.fire()  # a's deadline passes while b's handler runs: it must not cut b short
        gate_b.set()
        assert await asyncio.wait_for(b, 2.0) == ("h", "b")  # b's handler was not cut short
    finally:
        gate_b.set()
        await asyncio.gather(a, b, return_exceptions=True)


async def test_full_mailbox_refuses_fast_with_unavailable(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=3, idle_seconds=60.0, ask_timeout=2.0)
    register_probes(sys_, journal)
    full_before = sample("pocho_actor_mailbox_full_total", {"kind": PROBE})
    gate, entered = asyncio.Event(), asyncio.Event()
    try:
        head = spawn(sys_.ask(PROBE, "m", Op("head", entered=entered, gate=gate)))
        await wait_event(entered)  # taken off the mailbox, blocked in its handler
        for i in range(3):
            sys_.tell(PROBE, "m", Op(f"q{i}"))
        refused = raises_at_once(sys_.ask(PROBE, "m", Op("refused")))  # fails fast: never waits
        assert isinstance(refused, EngineError) and refused.code == "unavailable"
        sys_.tell(PROBE, "m", Op("dropped"))  # a told message past the bound is dropped, not queued
        assert sample("pocho_actor_mailbox_full_total", {"kind": PROBE}) == full_before + 2
        # other actors are not affected by one actor's full mailbox
        assert await sys_.ask(PROBE, "other", Op("ok")) == ("other", "ok")
        gate.set()
        assert await head == ("m", "head")
        await eventually(lambda: len(journal.handled("m")) == 4)
        assert await sys_.ask(PROBE, "m", Op("later")) == ("m", "later")
        assert journal.handled("m") == ["head", "q0", "q1", "q2", "later"]
    finally:
        gate.set()
        await sys_.stop()


# ---------------------------------------------------------------- failures


async def test_a_raising_handler_fails_only_that_message(system: ActorSystem, journal: Journal) -> None:
    with pytest.raises(EngineError) as err:
        await system.ask(PROBE, "e", Op("bad", error=EngineError("offer_closed", "too late")))
    assert err.value.code == "offer_closed"
    assert await system.ask(PROBE, "e", Op("good")) == ("e", "good")

    boom = ValueError("boom")
    with pytest.raises(ValueError) as verr:
        await system.ask(PROBE, "e", Op("value", error=boom))
    assert verr.value is boom  # the very same exception object reaches the asker
    assert await system.ask(PROBE, "e", Op("good2")) == ("e", "good2")
    assert journal.activations["e"] == 1  # a failed message does not reload the actor


async def test_errors_reach_the_right_asker_in_a_batch(system: ActorSystem) -> None:
    boom = KeyError("k")
    results = await asyncio.gather(
        system.ask(PROBE, "b", Op(1)),
        system.ask(PROBE, "b", Op(2, error=boom)),
        system.ask(PROBE, "b", Op(3)),
        system.ask(PROBE, "b", Op(4, error=EngineError("not_found"))),
        system.ask(PROBE, "b", Op(5)),
        return_exceptions=True,
    )
    assert results[0] == ("b", 1) and results[2] == ("b", 3) and results[4] == ("b", 5)
    assert results[1] is boom
    assert isinstance(results[3], EngineError) and results[3].code == "not_found"


async def test_told_message_that_raises_does_not_stop_the_actor(system: ActorSystem, journal: Journal) -> None:
    system.tell(PROBE, "tt", Op("bad", error=RuntimeError("told failure")))
    system.tell(PROBE, "tt", Op("fine"))
    assert await system.ask(PROBE, "tt", Op("asked")) == ("tt", "asked")
    assert journal.handled("tt") == ["bad", "fine", "asked"]
