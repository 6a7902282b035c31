"""One actor's write-behind bookkeeping, shared by every actor kind that group-commits.

An actor hands each change to the writer and goes on at once; this keeps what that needs:
the chain of its writes (each is submitted `after` the previous one, so a failure fails
every later write unwritten), the count still in flight (an actor with writes in flight
must not be passivated), the replies remembered for `clientMsgId` retries (pending until
their commit, so a retry is never told `ok` early), and a generation that makes callbacks
of writes from before a reload ignore themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.runtime.actor import Pending

ReplyKey = tuple[str, str]  # (user id, clientMsgId)


class WriteChain:
    __slots__ = ("_generation", "inflight", "last", "limit", "replies")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # remembered replies at most
        self.replies: dict[ReplyKey, Any] = {}
        self.inflight = 0
        self.last: asyncio.Future[None] | None = None
        self._generation = 0

    async def settle(self) -> None:
        """Wait for every write still in flight (a reload must see them)."""
        if self.last is not None and not self.last.done():
            await asyncio.wait([self.last])

    def when_committed(self, data: Any) -> Any:
        """`data` now if nothing is in flight, else once what it shows is committed."""
        if self.inflight == 0 or self.last is None:
            return data
        return Pending(self.last, data)

    def track(
        self,
        commit: asyncio.Future[None],
        key: ReplyKey | None,
        reply: Any,
        on_commit: Callable[[], None],
        on_failure: Callable[[], None],
    ) -> Pending:
        """Chain a write the writer accepted; `on_commit` runs once it is durable,
        `on_failure` if it is not (then the actor must forget and reload)."""
        generation = self._generation
        pending = Pending(commit, reply)
        self.last = commit
        self.inflight += 1
        if key is not None:
            self.replies[key] = pending
            if len(self.replies) > self.limit:
                del self.replies[next(iter(self.replies))]

        def _done(fut: asyncio.Future[None]) -> None:
            self.inflight -= 1
            if generation != self._generation:
                return  # from before a reload: its outcome is already accounted for
            if fut.cancelled() or fut.exception() is not None:
                on_failure()
                return
            if key is not None and self.replies.get(key) is pending:
                self.replies[key] = reply
            on_commit()

        commit.add_done_callback(_done)
        return pending

    def forget(self) -> None:
        """After a failed write: drop the chain and the remembered replies."""
        self._generation += 1
        self.last = None
        self.replies.clear()
