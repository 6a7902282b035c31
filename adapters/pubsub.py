"""Reading Redis pub/sub so that the reading loop's owner can always stop it.

A task cancelled while inside some redis-py calls (seen with pub/sub reads and pipelines,
redis 8.1) can come back from the call as if nothing happened, and a loop around it then
never ends: its owner waits forever at shutdown. Loops over pub/sub read with a bounded
wait (`next_message`) and check after each Redis call (`raise_if_cancelled`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.client import PubSub

POLL_SECONDS = 0.5  # a read returns at least this often, so a swallowed cancel is seen


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that a library call swallowed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def next_message(pubsub: PubSub) -> Any:
    """The next published message's data, or None after `POLL_SECONDS` without one."""
    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
    raise_if_cancelled()
    if msg is not None and msg["type"] == "message":
        return msg["data"]
    return None
