"""The contract between the scheduler and a named collector.

A collector has two halves with different jobs:
- ``poll()`` does the I/O (NVML, /proc, the hub API) and returns an immutable snapshot.
  The scheduler calls it in the background on the collector's interval, never during a
  scrape. It raises to say the source failed; it may be a coroutine function.
- ``render(snapshot)`` turns the latest snapshot into fresh metric families on each scrape.
  It is pure. ``snapshot`` is None when the last poll failed or none has finished yet, so a
  collector can still say ``..._up 0`` while its source is down.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

# Every poll must finish within max(MIN_DEADLINE_SECONDS, 2 intervals); see scheduler.py.
MIN_DEADLINE_SECONDS = 10.0


class Collector(ABC):
    name: str = ""
    interval: float = 5.0

    @property
    def deadline(self) -> float:
        """Seconds a poll may take before the collector counts as failed."""
        return max(MIN_DEADLINE_SECONDS, 2 * self.interval)

    @abstractmethod
    def poll(self) -> Any:
        """Read the source and return a snapshot; raise on failure."""

    @abstractmethod
    def render(self, snapshot: Any | None) -> Iterable[Metric]:
        """Metric families for the latest snapshot (None: source unavailable)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most collectors hold nothing
        """Release what poll() opened (threads, handles, clients)."""
