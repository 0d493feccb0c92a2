"""The contract between the scheduler and a source.

A source does the I/O of one kind of data (NVML, /proc, the hub API) and returns a
``model`` snapshot from ``poll()``. The scheduler calls it in the background on the
source's interval, never during a scrape; it raises to say the source failed, and may be
a coroutine function (else it runs in a thread of its own). A source that ``needs`` others
gets their snapshots of the same cycle as arguments, in that order, and fails with them; then
one per source it takes ``optionally``: its snapshot, or None when that source failed or
runs for no enabled collector (a student's kernel deaths are still told while NVML is down).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

# Every poll must finish within max(MIN_DEADLINE_SECONDS, 2 intervals); see scheduler.py.
MIN_DEADLINE_SECONDS = 10.0


class Source(ABC):
    name: str = ""
    interval: float = 5.0
    needs: tuple[str, ...] = ()
    optionally: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every source it runs after: the ones it needs, then the ones it takes if it can."""
        return (*self.needs, *self.optionally)

    @property
    def deadline(self) -> float:
        """Seconds a poll may take before the source counts as failed."""
        return max(MIN_DEADLINE_SECONDS, 2 * self.interval)

    @abstractmethod
    def poll(self, *inputs: Any) -> Any:
        """Read the source and return a snapshot; raise on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release what poll() opened (threads, handles, clients)."""
