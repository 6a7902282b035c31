"""Probe actors and helpers for the actor runtime tests (pure asyncio, no database)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError
from engine.runtime.actor import Actor, ActorSystem
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


def register_probes(sys_: ActorSystem, journal: Journal) -> None:
    sys_.register(PROBE, lambda i: Probe(i, journal))
    sys_.register(METERED, lambda i: MeteredProbe(i, journal))
    sys_.register(STOPPED, lambda i: StoppedProbe(i, journal))


def spawn(aw: Awaitable[Any]) -> asyncio.Task[Any]:
    async def run() -> Any:
        return await aw

    return asyncio.get_running_loop().create_task(run())
