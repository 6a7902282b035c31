"""Probe actors and helpers for the actor runtime tests (pure asyncio, no database).

No test here depends on how fast the machine is: tests wait for state (events the probes
set, `tests.helpers.eventually`), and where the outcome hinges on a timer firing before or
after something else, the timer is a `ManualTimer` the test fires itself, and idleness is
measured on a `FakeClock` the test moves.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Context
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
    passivations: Counter[str] = field(default_factory=Counter)
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

    def on_passivate(self) -> None:
        self.journal.passivations[self.id] += 1

    def idle(self) -> bool:
        return self.id not in self.journal.writes_in_flight


class MeteredProbe(Probe):
    kind = METERED


class StoppedProbe(Probe):
    kind = STOPPED


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


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


def queued(sys_: ActorSystem, kind: str = PROBE) -> int:
    """Messages waiting in the mailboxes of `kind` (what a spawned ask has reached)."""
    return sys_.mailbox_depths().get(kind, 0)


def has_queued(sys_: ActorSystem, n: int, kind: str = PROBE) -> Callable[[], bool]:
    """A condition for `eventually`: `n` messages wait in the mailboxes of `kind`."""
    return lambda: queued(sys_, kind) == n


def raises_at_once(coro: Coroutine[Any, Any, Any]) -> BaseException:
    """Run a coroutine up to its first suspension and return what it raised: proof that it
    failed without waiting for anything, with no clock involved."""
    try:
        coro.send(None)
    except BaseException as exc:
        return exc
    finally:
        coro.close()
    raise AssertionError("it suspended instead of failing at once")


# ---------------------------------------------------------------- timers and clocks the test drives

MANUAL = 1e6  # a delay no real timer here uses: `timeout=MANUAL` or `schedule(MANUAL, ...)` arms a ManualTimer


class ManualTimer:
    """Stands in for an asyncio.TimerHandle: fires when the test says so, never by itself."""

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def fire(self) -> None:
        """Run the callback now, as the loop would at the deadline; a cancelled timer stays silent."""
        if not self._cancelled and not self.fired:
            self.fired = True
            self._callback(*self._args)


class ManualTimers:
    """Replaces the running loop's `call_later` for delay MANUAL; every other delay stays real."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._real = loop.call_later
        self.armed: list[ManualTimer] = []

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Any:
        if delay != MANUAL:
            return self._real(delay, callback, *args, context=context)
        timer = ManualTimer(callback, args)
        self.armed.append(timer)
        return timer


class FakeClock:
    """Stands in for the `time` module inside engine.runtime.actor, so idleness is measured on
    a clock the test moves (`now`); handler timings keep the real perf_counter."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def perf_counter() -> float:
        return time.perf_counter()
