"""Actors: one per key, a bounded mailbox, one message at a time, activation and passivation.

No task is created per message on the common path: a caller that finds an actor idle
with an empty mailbox handles its own message in its own coroutine; when messages queue
up behind a busy actor, one drain task works through them (so one asker's timeout never
cancels another's handler). `tell` (timers, sweeps) starts that task when needed.
A handler answers with a value, or with a `Pending` whose future the write-behind
writer resolves on commit, so the actor takes its next message without waiting.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from engine.errors import EngineError
from engine.runtime import metrics

log = logging.getLogger("pocho.actors")


@dataclass(slots=True)
class Pending:
    """A reply that becomes true on commit: `commit` resolves, then `reply` is answered."""

    commit: asyncio.Future[None]
    reply: Any


class Actor:
    """Base class: subclasses load their state and handle messages; the runtime does the rest."""

    kind: ClassVar[str] = ""
    __slots__ = ("_cell", "id")

    def __init__(self, actor_id: str) -> None:
        self.id = actor_id
        self._cell: _Cell | None = None

    async def activate(self) -> None:
        """Load state from storage; re-arm stored deadlines with `self.schedule`."""

    async def handle(self, msg: Any) -> Any:
        raise NotImplementedError

    def on_passivate(self) -> None:
        """The runtime drops this actor from memory (idle passivation or stop): cancel its
        timers. Called only when `idle()` (no writes in flight), or at shutdown."""

    def idle(self) -> bool:
        """False while writes are in flight (the actor must not be passivated then)."""
        return True

    def snapshot(self) -> dict[str, Any]:
        """Live state for ops (GET /admin/actors/...)."""
        return {}

    def schedule(self, delay: float, msg: Any) -> asyncio.TimerHandle:
        """Send `msg` to myself after `delay` seconds (a timer is just a message)."""
        cell = self._cell
        assert cell is not None
        return asyncio.get_running_loop().call_later(max(delay, 0.0), cell.system.tell, self.kind, self.id, msg)

    def reset(self) -> None:
        """Forget in-memory state after a failed write: the next message reloads from storage."""
        if self._cell is not None:
            self._cell.activated = False


class _Cell:
    """Runtime bookkeeping for one live actor."""

    __slots__ = ("activated", "actor", "draining", "handled", "last_used", "mailbox", "system")

    def __init__(self, system: ActorSystem, actor: Actor) -> None:
        self.system = system
        self.actor = actor
        self.mailbox: deque[tuple[Any, asyncio.Future[Any] | None]] = deque()
        self.draining = False
        self.activated = False
        self.last_used = time.monotonic()
        self.handled = _handle_seconds(actor.kind)
        actor._cell = self

    async def drain(self, limit: int = -1) -> None:
        """Handle queued messages one at a time until the mailbox is empty (or `limit` done)."""
        kind = self.actor.kind
        try:
            while self.mailbox and limit != 0:
                limit -= 1
                msg, fut = self.mailbox.popleft()
                if fut is not None and fut.done():  # the asker gave up
                    continue
                started = time.perf_counter()
                try:
                    if not self.activated:
                        await self.actor.activate()
                        self.activated = True
                        metrics.ACTIVATIONS.labels(kind).inc()
                    result = await self.actor.handle(msg)
                except BaseException as exc:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else EngineError("unavailable"))
                    if not isinstance(exc, Exception):
                        raise
                    if isinstance(exc, EngineError):
                        pass
                    elif self.system.transient(exc):  # storage away: expected, answered at the edge
                        log.warning(
                            "actor message failed: storage unavailable",
                            extra={"actor": f"{kind}:{self.actor.id}", "error": type(exc).__name__},
                        )
                    else:
                        log.exception("actor message failed", extra={"actor": f"{kind}:{self.actor.id}"})
                else:
                    if fut is not None:
                        _answer(fut, result)
                finally:
                    self.handled.observe(time.perf_counter() - started)
                    self.last_used = time.monotonic()
        finally:
            self.draining = False
            if self.mailbox:  # more arrived, or the caller was cancelled: go on in a task of our own
                self.start_task()

    def start_task(self) -> None:
        if not self.draining and not self.system.stopping:
            self.draining = True
            task = asyncio.get_running_loop().create_task(self.drain())
            self.system.drains.add(task)  # keep a reference until it is done
            task.add_done_callback(self.system.drains.discard)


def _answer(fut: asyncio.Future[Any], result: Any) -> None:
    if fut.done():  # the asker timed out or was cancelled while we handled its message
        return
    if not isinstance(result, Pending):
        fut.set_result(result)
        return
    reply = result.reply

    def _committed(commit: asyncio.Future[None]) -> None:
        if fut.done():
            return
        if commit.cancelled():
            fut.set_exception(EngineError("unavailable", "storage is unavailable, retry"))
        elif (exc := commit.exception()) is not None:
            failed = exc if isinstance(exc, EngineError) else EngineError("unavailable", "storage failed, retry")
            fut.set_exception(failed)
        else:
            fut.set_result(reply)

    result.commit.add_done_callback(_committed)


@functools.cache
def _handle_seconds(kind: str) -> Any:
    """The labelled histogram child per actor kind, looked up once (labels() costs on hot paths)."""
    return metrics.HANDLE_SECONDS.labels(kind)


Factory = Callable[[str], Actor]


class Placement(Protocol):
    """Where actors live when several nodes share them (pocho_rt/routing.py): an actor whose
    shard this node does not serve is asked and told through its owner, never activated here."""

    def here(self, kind: str, actor_id: str) -> bool: ...

    async def ask(self, kind: str, actor_id: str, msg: Any, timeout: float) -> Any: ...  # noqa: ASYNC109

    def tell(self, kind: str, actor_id: str, msg: Any) -> None: ...


class ActorSystem:
    """The live actors of this node, by key `kind:id`."""

    def __init__(
        self,
        *,
        mailbox_size: int,
        idle_seconds: float,
        ask_timeout: float,
        transient: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        """`transient`: failures that are expected (storage away), logged without a traceback;
        the edge decides what they mean (the engine knows no drivers)."""
        self.transient = transient
        self._factories: dict[str, Factory] = {}
        self._cells: dict[str, _Cell] = {}
        self.mailbox_size = mailbox_size
        self.idle_seconds = idle_seconds
        self.ask_timeout = ask_timeout
        self.drains: set[asyncio.Task[None]] = set()
        self.stopping = False  # set by `stop`: no new drain task starts
        self.placement: Placement | None = None  # None: one node, every actor lives here
        metrics.SYSTEMS.add(self)

    def mailbox_depths(self) -> dict[str, int]:
        """Queued messages by actor kind (read at scrape time)."""
        out: dict[str, int] = {}
        for cell in list(self._cells.values()):
            if cell.mailbox:
                out[cell.actor.kind] = out.get(cell.actor.kind, 0) + len(cell.mailbox)
        return out

    def register(self, kind: str, factory: Factory) -> None:
        self._factories[kind] = factory

    def _cell(self, kind: str, actor_id: str) -> _Cell:
        key = f"{kind}:{actor_id}"
        cell = self._cells.get(key)
        if cell is None:
            cell = _Cell(self, self._factories[kind](actor_id))
            self._cells[key] = cell
            metrics.LIVE_ACTORS.labels(kind).inc()
        return cell

    def _enqueue(self, cell: _Cell, msg: Any, fut: asyncio.Future[Any] | None) -> None:
        if len(cell.mailbox) >= self.mailbox_size:
            metrics.MAILBOX_FULL.labels(cell.actor.kind).inc()
            raise EngineError("unavailable", "too busy, retry")
        cell.mailbox.append((msg, fut))

    async def ask(self, kind: str, actor_id: str, msg: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Send and wait for the reply. After `timeout` seconds: EngineError `unavailable` if the
        message was never handled (still queued, or its handler cut short before it handed
        a write over), else `timeout` (a write may commit: the outcome is not known)."""
        placement = self.placement
        if placement is not None and not placement.here(kind, actor_id):
            return await placement.ask(kind, actor_id, msg, timeout or self.ask_timeout)
        cell = self._cell(kind, actor_id)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._enqueue(cell, msg, fut)
        # Ours is the only message: handle it right here, no task. Anything that arrives
        # meanwhile is drained by a task of the cell's own, so our timeout can only ever
        # cut short our own handler.
        inline = not cell.draining and len(cell.mailbox) == 1
        task = asyncio.current_task() if inline else None
        running = cut = False

        def _on_timeout() -> None:  # a plain timer: cheaper than asyncio.timeout() per ask
            nonlocal cut
            if not fut.done():
                # PROTOCOL: `unavailable` = not applied, `timeout` = outcome unknown. Still queued
                # (the drain skips an answered message) or our own handler cut short below (a
                # handler submits its write and returns in one step): never reached the writer.
                # Otherwise a write may be on its way to PostgreSQL.
                if running or any(f is fut for _, f in cell.mailbox):
                    fut.set_exception(EngineError("unavailable", "not handled in time, retry"))
                else:
                    fut.set_exception(EngineError("timeout", "no answer in time, retry"))
            if running and task is not None:
                cut = True
                task.cancel()  # our own handler overran

        timer = loop.call_later(timeout or self.ask_timeout, _on_timeout)
        try:
            if inline:
                cell.draining = running = True
                try:
                    await cell.drain(limit=1)
                except asyncio.CancelledError:
                    if not cut or task is None or task.uncancel() > 0:
                        raise  # cancelled by someone else: let it through
                finally:
                    running = False
            elif not cell.draining:
                cell.start_task()
            return await fut
        finally:
            timer.cancel()
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: an asker cancelled mid-wait leaves no asyncio warning

    def tell(self, kind: str, actor_id: str, msg: Any) -> None:
        """Send without waiting; errors are logged by the actor, not returned."""
        placement = self.placement
        if placement is not None and not placement.here(kind, actor_id):
            placement.tell(kind, actor_id, msg)
            return
        cell = self._cell(kind, actor_id)
        try:
            self._enqueue(cell, msg, None)
        except EngineError:
            log.warning("mailbox full, dropped a told message", extra={"actor": f"{kind}:{actor_id}"})
            return
        cell.start_task()

    def live(self, kind: str | None = None) -> list[Actor]:
        return [c.actor for c in self._cells.values() if kind is None or c.actor.kind == kind]

    def keys(self) -> list[tuple[str, str]]:
        """(kind, id) of every actor in memory."""
        return [(c.actor.kind, c.actor.id) for c in self._cells.values()]

    def get(self, kind: str, actor_id: str) -> Actor | None:
        cell = self._cells.get(f"{kind}:{actor_id}")
        return cell.actor if cell else None

    def passivate(self, kind: str, actor_id: str) -> bool:
        """Drop an idle actor from memory; False if it is busy or has writes in flight."""
        key = f"{kind}:{actor_id}"
        cell = self._cells.get(key)
        if cell is None or cell.draining or cell.mailbox or not cell.actor.idle():
            return False
        del self._cells[key]
        cell.actor.on_passivate()
        metrics.LIVE_ACTORS.labels(kind).dec()
        metrics.PASSIVATIONS.labels(kind).inc()
        return True

    def local(self, kind: str, actor_id: str) -> bool:
        """Whether this node runs that actor (always, without placement)."""
        return self.placement is None or self.placement.here(kind, actor_id)

    async def evict(self, keys: list[tuple[str, str]], timeout: float) -> None:  # noqa: ASYNC109
        """Passivate these actors as soon as each is idle (queued messages handled, writes
        committed); past `timeout`, drop the rest anyway: their queued asks fail `unavailable`
        and their writes, if any still come, are fenced. For a shard leaving this node."""
        deadline = time.monotonic() + timeout
        pending = [k for k in keys if not self.passivate(*k)]
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # writes in flight: their commits give no shared event to await
            pending = [k for k in pending if f"{k[0]}:{k[1]}" in self._cells and not self.passivate(*k)]
        for kind, actor_id in pending:
            cell = self._cells.pop(f"{kind}:{actor_id}", None)
            if cell is None:
                continue
            for _msg, fut in cell.mailbox:
                if fut is not None and not fut.done():
                    fut.set_exception(EngineError("unavailable", "that item is moving between servers, retry"))
            cell.mailbox.clear()
            cell.actor.on_passivate()
            metrics.LIVE_ACTORS.labels(kind).dec()
            log.warning("actor dropped while its shard moved", extra={"actor": f"{kind}:{actor_id}"})

    def passivate_idle(self) -> int:
        cutoff = time.monotonic() - self.idle_seconds
        idle = [(c.actor.kind, c.actor.id) for c in self._cells.values() if c.last_used < cutoff]
        return sum(self.passivate(k, i) for k, i in idle)

    async def run_passivation(self) -> None:
        """The loop that drops idle actors, for the life of the process (a supervisor runs it)."""
        while True:
            await asyncio.sleep(max(self.idle_seconds / 4, 0.05))
            self.passivate_idle()

    async def stop(self) -> None:
        """Drop every actor (after the writer's final flush): queued messages are cancelled
        and the drain tasks working on them awaited."""
        self.stopping = True
        drains = list(self.drains)
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        for cell in self._cells.values():
            for _msg, fut in cell.mailbox:
                if fut is not None and not fut.done():
                    fut.set_exception(EngineError("unavailable", "server shutting down, retry"))
            cell.mailbox.clear()
        for cell in list(self._cells.values()):
            cell.actor.on_passivate()
            metrics.LIVE_ACTORS.labels(cell.actor.kind).dec()
        self._cells.clear()
