"""Waiting longer after each failure, so a source that is down is not hammered.

Used wherever a source retries by itself: NVML's initialisation (1 s doubling to 60 s),
the hub API (one poll interval doubling to four) and the Kubernetes API (1 s to 30 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """After the n-th failure in a row, ``ready()`` is False for first * 2**(n-1) seconds,
    at most ``longest``; a success starts over."""

    def __init__(
        self,
        first: float,
        longest: float,
        clock: Callable[[], float] = time.monotonic,
        early: float = 0.0,
    ) -> None:
        """early: seconds to retry before the wait is over, so a retry meant for the next
        tick of a scheduler falls on that tick, not one tick after it."""
        self.first = first
        self.longest = longest
        self.clock = clock
        self.early = early
        self.failures = 0
        self._retry_at = 0.0

    def ready(self) -> bool:
        return self.failures == 0 or self.clock() >= self._retry_at

    def remaining(self) -> float:
        """Seconds until ready() (0 when it is)."""
        return 0.0 if self.ready() else self._retry_at - self.clock()

    def failed(self) -> None:
        self.failures += 1
        wait = min(self.first * 2 ** (self.failures - 1), self.longest)
        self._retry_at = self.clock() + wait - self.early

    def succeeded(self) -> None:
        self.failures = 0
