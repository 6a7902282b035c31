"""The actor runtime (engine/runtime/actor.py): turn-based mailboxes, backpressure, timeouts,
activation and passivation, timers, commit-gated replies and the runtime's metrics.

Pure asyncio, no database: the actors are small probes defined here, driven by `Op` messages
that say what the handler does (wait on a gate, raise, schedule a timer, reply with a value).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.errors import EngineError
from engine.runtime.actor import Actor, ActorSystem, Pending
from engine.runtime.metrics import REGISTRY

PROBE = "t_rt_probe"
METERED = "t_rt_metered"
STOPPED = "t_rt_stopped"


@dataclass
class Op:
    """One message for a probe: what its handler does, in this order."""

    tag: Any
    entered: asyncio.Event | None = None  # set as soon as the handler starts
    gate: asyncio.Event | None = None  # awaited inside the handler
    schedule: tuple[float, Op] | None = None  # a timer to arm: self.schedule(delay, op)
    error: BaseException | None = None  # raised at the end of the handler
    reply: Any = None  # returned instead of (actor id, tag) when set
    done: asyncio.Event | None = None  # set when the handler finishes


@dataclass
class Journal:
    """What the probes of one test did."""

    events: list[tuple[str, str, Any]] = field(default_factory=list)
    activations: Counter[str] = field(default_factory=Counter)
    deactivations: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    max_running: Counter[str] = field(default_factory=Counter)
    writes_in_flight: set[str] = field(default_factory=set)
    fail_next_activation: set[str] = field(default_factory=set)

    def handled(self, actor_id: str) -> list[Any]:
        return [tag for kind, aid, tag in self.events if kind == "exit" and aid == actor_id]


class Probe(Actor):
    kind = PROBE

    def __init__(self, actor_id: str, journal: Journal) -> None:
        super().__init__(actor_id)
        self.journal = journal

    async def activate(self) -> None:
        self.journal.activations[self.id] += 1
        if self.id in self.journal.fail_next_activation:
            self.journal.fail_next_activation.discard(self.id)
            raise EngineError("unavailable", "could not load state")

    async def handle(self, msg: Op) -> Any:
        j = self.journal
        j.running[self.id] += 1
        j.max_running[self.id] = max(j.max_running[self.id], j.running[self.id])
        j.events.append(("enter", self.id, msg.tag))
        try:
            if msg.entered is not None:
                msg.entered.set()
            await asyncio.sleep(0)  # always yield: a second message of this actor could sneak in here
            if msg.gate is not None:
                await msg.gate.wait()
            if msg.schedule is not None:
                self.schedule(*msg.schedule)
        finally:
            j.running[self.id] -= 1
            j.events.append(("exit", self.id, msg.tag))
            if msg.done is not None:
                msg.done.set()
        if msg.error is not None:
            raise msg.error
        return msg.reply if msg.reply is not None else (self.id, msg.tag)

    def deactivate(self) -> None:
        self.journal.deactivations[self.id] += 1

    def idle(self) -> bool:
        return self.id not in self.journal.writes_in_flight


class MeteredProbe(Probe):
    kind = METERED


class StoppedProbe(Probe):
    kind = STOPPED


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def eventually(cond: Callable[[], bool], timeout: float = 2.0, step: float = 0.01) -> None:  # noqa: ASYNC109
    """Bounded wait for a condition (time-based behaviour only)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


async def wait_event(ev: asyncio.Event, timeout: float = 2.0) -> None:  # noqa: ASYNC109
    await asyncio.wait_for(ev.wait(), timeout)


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
async def system(journal: Journal) -> AsyncIterator[ActorSystem]:
    sys_ = ActorSystem(mailbox_size=100, idle_seconds=60.0, ask_timeout=2.0)
    _register(sys_, journal)
    try:
        yield sys_
    finally:
        await sys_.stop()


def _register(sys_: ActorSystem, journal: Journal) -> None:
    sys_.register(PROBE, lambda i: Probe(i, journal))
    sys_.register(METERED, lambda i: MeteredProbe(i, journal))
    sys_.register(STOPPED, lambda i: StoppedProbe(i, journal))


def spawn(aw: Awaitable[Any]) -> asyncio.Task[Any]:
    async def run() -> Any:
        return await aw

    return asyncio.get_running_loop().create_task(run())


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
    await asyncio.sleep(0)  # the ask enqueues when its task first runs
    system.tell(PROBE, "a", Op("told"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert journal.handled("a") == []
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
            await asyncio.sleep(0)  # let the ask enqueue before the next message
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


async def test_ask_timeout_and_the_actor_keeps_working(system: ActorSystem, journal: Journal) -> None:
    never = asyncio.Event()
    started = time.monotonic()
    with pytest.raises(EngineError) as err:
        await system.ask(PROBE, "t", Op("stuck", gate=never), timeout=0.05)
    assert err.value.code == "timeout"
    assert time.monotonic() - started < 1.0
    assert await system.ask(PROBE, "t", Op("next")) == ("t", "next")
    assert await system.ask(PROBE, "t", Op("again"), timeout=0.5) == ("t", "again")
    assert journal.max_running["t"] == 1


async def test_ask_timeout_while_queued_skips_the_message(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    head = spawn(system.ask(PROBE, "q", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)
    with pytest.raises(EngineError) as err:
        await system.ask(PROBE, "q", Op("gave-up"), timeout=0.05)
    assert err.value.code == "timeout"
    gate.set()
    assert await head == ("q", "head")
    assert await system.ask(PROBE, "q", Op("after")) == ("q", "after")
    assert journal.handled("q") == ["head", "after"]  # the abandoned message was never handled


async def test_ask_timing_out_during_its_handler_does_not_break_the_drainer(system: ActorSystem) -> None:
    gate_c, entered_c = asyncio.Event(), asyncio.Event()
    c = spawn(system.ask(PROBE, "d", Op("c", entered=entered_c, gate=gate_c), timeout=5.0))
    await wait_event(entered_c)  # c drains the mailbox in its own coroutine
    gate_a, entered_a = asyncio.Event(), asyncio.Event()
    a = spawn(system.ask(PROBE, "d", Op("a", entered=entered_a, gate=gate_a), timeout=0.3))
    await asyncio.sleep(0)
    gate_c.set()
    await wait_event(entered_a)  # a's handler runs inside c's drain
    with pytest.raises(EngineError) as err:
        await a
    assert err.value.code == "timeout"
    gate_a.set()
    assert await asyncio.wait_for(c, 2.0) == ("d", "c")
    assert await system.ask(PROBE, "d", Op("after")) == ("d", "after")


async def test_an_answered_asker_is_not_held_by_later_messages(system: ActorSystem) -> None:
    gate_a, entered_a = asyncio.Event(), asyncio.Event()
    a = spawn(system.ask(PROBE, "h", Op("a", entered=entered_a, gate=gate_a), timeout=0.3))
    await wait_event(entered_a)
    gate_b, entered_b = asyncio.Event(), asyncio.Event()
    b = spawn(system.ask(PROBE, "h", Op("b", entered=entered_b, gate=gate_b), timeout=5.0))
    await asyncio.sleep(0)
    gate_a.set()
    await wait_event(entered_b)
    try:
        assert await asyncio.wait_for(a, 1.0) == ("h", "a")  # answered: must not wait for b
        gate_b.set()
        assert await asyncio.wait_for(b, 2.0) == ("h", "b")  # b's handler was not cut short
    finally:
        gate_b.set()
        await asyncio.gather(a, b, return_exceptions=True)


async def test_full_mailbox_refuses_fast_with_unavailable(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=3, idle_seconds=60.0, ask_timeout=2.0)
    _register(sys_, journal)
    full_before = sample("pocho_actor_mailbox_full_total", {"kind": PROBE})
    gate, entered = asyncio.Event(), asyncio.Event()
    try:
        head = spawn(sys_.ask(PROBE, "m", Op("head", entered=entered, gate=gate)))
        await wait_event(entered)  # taken off the mailbox, blocked in its handler
        for i in range(3):
            sys_.tell(PROBE, "m", Op(f"q{i}"))
        started = time.monotonic()
        with pytest.raises(EngineError) as err:
            await sys_.ask(PROBE, "m", Op("refused"))
        assert err.value.code == "unavailable"
        assert time.monotonic() - started < 0.1
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


# ---------------------------------------------------------------- activation and passivation


async def test_activation_once_then_again_after_passivation(system: ActorSystem, journal: Journal) -> None:
    assert system.get(PROBE, "p") is None
    for i in range(3):
        await system.ask(PROBE, "p", Op(i))
    assert journal.activations["p"] == 1
    assert system.get(PROBE, "p") is not None
    assert system.passivate(PROBE, "p") is True
    assert journal.deactivations["p"] == 1
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
    assert system.get(PROBE, "x") is not None and journal.deactivations["x"] == 0
    journal.writes_in_flight.discard("x")
    assert system.passivate(PROBE, "x") is True
    assert journal.deactivations["x"] == 1


async def test_passivate_idle_drops_only_long_idle_actors(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=0.1, ask_timeout=2.0)
    _register(sys_, journal)
    try:
        await sys_.ask(PROBE, "old", Op(1))
        await sys_.ask(PROBE, "writing", Op(1))
        journal.writes_in_flight.add("writing")
        assert sys_.passivate_idle() == 0  # just used
        assert {a.id for a in sys_.live(PROBE)} == {"old", "writing"}
        started = time.monotonic()

        def swept() -> bool:
            sys_.passivate_idle()
            return sys_.get(PROBE, "old") is None

        await eventually(swept)
        assert time.monotonic() - started >= 0.05
        await sys_.ask(PROBE, "fresh", Op(1))
        assert sys_.passivate_idle() == 0
        assert sys_.get(PROBE, "fresh") is not None
        assert sys_.get(PROBE, "writing") is not None  # idle() False: kept although idle for long
        assert journal.deactivations == Counter({"old": 1})
    finally:
        await sys_.stop()


async def test_sweeper_passivates_idle_actors(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=0.05, ask_timeout=2.0)
    _register(sys_, journal)
    sys_.start()
    try:
        await sys_.ask(PROBE, "s", Op(1))
        assert sys_.get(PROBE, "s") is not None
        await eventually(lambda: sys_.get(PROBE, "s") is None)
        assert journal.deactivations["s"] == 1
        assert await sys_.ask(PROBE, "s", Op(2)) == ("s", 2)
        assert journal.activations["s"] == 2
    finally:
        await sys_.stop()


async def test_stop_deactivates_every_actor(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=60.0, ask_timeout=2.0)
    _register(sys_, journal)
    for i in range(3):
        await sys_.ask(STOPPED, f"z{i}", Op(i))
    await sys_.stop()
    assert journal.deactivations == Counter({"z0": 1, "z1": 1, "z2": 1})
    assert sys_.live() == []


async def test_stop_resets_the_live_actor_gauge(journal: Journal) -> None:
    sys_ = ActorSystem(mailbox_size=10, idle_seconds=60.0, ask_timeout=2.0)
    _register(sys_, journal)
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
    assert journal.handled("tm") == ["arm"]
    await wait_event(ticked)
    assert time.monotonic() - started >= 0.025
    assert journal.handled("tm") == ["arm", "tick"]
    assert journal.activations["tm"] == 1


async def test_timer_after_passivation_reactivates_the_actor(system: ActorSystem, journal: Journal) -> None:
    ticked = asyncio.Event()
    await system.ask(PROBE, "tp", Op("arm", schedule=(0.02, Op("tick", done=ticked))))
    assert system.passivate(PROBE, "tp") is True  # the probe does not cancel its timers
    await wait_event(ticked)
    assert journal.activations["tp"] == 2


# ---------------------------------------------------------------- commit-gated replies


async def test_pending_reply_resolves_only_after_commit(system: ActorSystem) -> None:
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    asked = spawn(system.ask(PROBE, "pc", Op("write", reply=Pending(commit, "acked"))))
    # the actor is free for its next message while the write is in flight
    assert await system.ask(PROBE, "pc", Op("next")) == ("pc", "next")
    for _ in range(5):
        await asyncio.sleep(0)
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
    asked = spawn(system.ask(PROBE, "pf", Op("write", reply=Pending(commit, "acked"))))
    for _ in range(5):
        await asyncio.sleep(0)
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
    commit.set_result(None)  # a late commit does not blow up
    await asyncio.sleep(0)
    assert await system.ask(PROBE, "pt", Op("next")) == ("pt", "next")


# ---------------------------------------------------------------- cancellation


async def test_cancelled_asker_mid_drain_does_not_wedge_the_actor(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    drainer = spawn(system.ask(PROBE, "w", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)  # drainer runs head's handler in its own coroutine
    queued = [spawn(system.ask(PROBE, "w", Op(i))) for i in range(3)]
    await asyncio.sleep(0)
    drainer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drainer
    # the queued askers are answered by a drain of the runtime's own
    assert await asyncio.wait_for(asyncio.gather(*queued), 1.0) == [("w", 0), ("w", 1), ("w", 2)]
    assert await system.ask(PROBE, "w", Op("later")) == ("w", "later")
    assert journal.max_running["w"] == 1
    assert system.passivate(PROBE, "w") is True  # not left marked as draining


async def test_cancelled_queued_asker_is_skipped(system: ActorSystem, journal: Journal) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    head = spawn(system.ask(PROBE, "k", Op("head", entered=entered, gate=gate)))
    await wait_event(entered)
    gone = spawn(system.ask(PROBE, "k", Op("gone")))
    kept = spawn(system.ask(PROBE, "k", Op("kept")))
    await asyncio.sleep(0)
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
