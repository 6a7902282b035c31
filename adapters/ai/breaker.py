"""One circuit breaker, used by every ML client.

Closed: calls go through; `failures` failures in a row open it. Open: calls are refused at
once (no network, no wait) for `reset_seconds`. Then half-open: exactly one trial call goes
through; its success closes the breaker, its failure opens it for another `reset_seconds`.
So a dead service costs the live flow nothing but the first few timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_change = on_change
        self.state: str = CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._trial = False  # a half-open trial call is in flight

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one caller gets True."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() - self._opened_at < self.reset_seconds:
                return False
            self._set(HALF_OPEN)
        if self._trial:
            return False
        self._trial = True
        return True

    def success(self) -> None:
        self.failures = 0
        self._trial = False
        if self.state != CLOSED:
            self._set(CLOSED)

    def failure(self) -> None:
        self._trial = False
        if self.state == HALF_OPEN:
            self._open()
            return
        self.failures += 1
        if self.state == CLOSED and self.failures >= self.threshold:
            self._open()

    def abandon(self) -> None:
        """The call was cancelled before it could tell: it counts neither way."""
        self._trial = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._set(OPEN)

    def _set(self, state: str) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(state)
