"""The one owner of a process's background loops.

Every long-running loop (group-commit writer, event publisher, actor sweeps, deadline
sweeper, session listener, outbox workers) is started here, watched while it runs, and
cancelled and awaited on shutdown. A loop that dies (raises) is logged, counted and
restarted after a back-off, and `/readyz` reports each loop's state so ops see it; a loop
that returns has finished on purpose (e.g. the writer after its final flush) and is not
restarted. Short-lived per-socket work uses `spawn`, which keeps a
reference until the task ends and cancels what is left on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from engine.runtime.metrics import REGISTRY

log = logging.getLogger("pocho.tasks")

LOOP_RESTARTS = Counter(
    "pocho_loop_restarts_total", "Background loops that died and were restarted", ["loop"], registry=REGISTRY
)

LoopFactory = Callable[[], Awaitable[None]]
_BACKOFF_START = 0.1
_BACKOFF_MAX = 10.0
_HEALTHY_AFTER = 30.0  # a run this long resets the back-off


@dataclass(slots=True)
class _Loop:
    name: str
    factory: LoopFactory
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    last_error: str | None = None
    state: str = "starting"  # running | restarting | finished | stopped


@dataclass(slots=True)
class Supervisor:
    """Starts, watches, restarts and finally stops this process's background work."""

    _loops: dict[str, _Loop] = field(default_factory=dict)
    _spawned: set[asyncio.Task[Any]] = field(default_factory=set)
    _closing: bool = False

    def loop(self, name: str, factory: LoopFactory) -> None:
        """Run `factory()` for the life of the process; restart it (with back-off) if it ends."""
        if name in self._loops:
            raise ValueError(f"loop {name!r} already registered")
        entry = _Loop(name, factory)
        self._loops[name] = entry
        entry.task = asyncio.get_running_loop().create_task(self._watch(entry), name=f"loop:{name}")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Short-lived work (e.g. one socket's delayed hang-up): referenced until done,
        cancelled on shutdown; an exception is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._spawned.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", extra={"task": task.get_name(), "error": repr(exc)[:300]})

    async def _watch(self, entry: _Loop) -> None:
        delay = _BACKOFF_START
        while True:
            started = time.monotonic()
            entry.state = "running"
            try:
                await entry.factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                entry.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.exception("background loop died", extra={"loop": entry.name})
            else:
                entry.state = "finished"
                log.info("background loop finished", extra={"loop": entry.name})
                return
            if self._closing:
                return
            entry.restarts += 1
            entry.state = "restarting"
            LOOP_RESTARTS.labels(entry.name).inc()
            if time.monotonic() - started > _HEALTHY_AFTER:
                delay = _BACKOFF_START
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    def status(self) -> dict[str, dict[str, Any]]:
        """Each loop's state for `/readyz`."""
        out: dict[str, dict[str, Any]] = {}
        for name, entry in self._loops.items():
            item: dict[str, Any] = {"state": entry.state, "restarts": entry.restarts}
            if entry.last_error:
                item["lastError"] = entry.last_error
            out[name] = item
        return out

    def healthy(self) -> bool:
        return all(e.state in ("running", "finished") for e in self._loops.values())

    async def stop(self) -> None:
        """Cancel every loop and spawned task and wait until all have ended."""
        self._closing = True
        tasks = [e.task for e in self._loops.values() if e.task is not None] + list(self._spawned)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "background task failed on shutdown", extra={"task": task.get_name(), "error": repr(result)[:300]}
                )
        for entry in self._loops.values():
            entry.state = "stopped"


async def wake_or_sleep(wake: asyncio.Event, seconds: float) -> None:
    """A periodic loop's pause: `seconds`, or less if `wake` is set meanwhile (then cleared)."""
    try:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands
        # as the event is set, and the supervisor would wait forever for this loop to end.
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        return
    wake.clear()
