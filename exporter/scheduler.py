"""Runs every enabled collector's poll() in the background and keeps its latest result.

Scrapes only read what is stored here, so a slow NVML call, a large /proc or a hub that
times out never makes /metrics wait. Each collector has its own task: one stuck source
does not delay the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from .collectors.base import Collector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectorState:
    """What the last poll of one collector left behind."""

    snapshot: Any | None = None
    success: bool = False
    duration_seconds: float = 0.0
    last_success_timestamp: float | None = None
    polled: bool = False
    error: str | None = None


class Scheduler:
    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self.states: dict[str, CollectorState] = {c.name: CollectorState() for c in collectors}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        """True once every collector has finished its first poll, failed or not."""
        return all(state.polled for state in self.states.values())

    async def poll_once(self, collector: Collector) -> None:
        started = time.perf_counter()
        previous = self.states[collector.name]
        try:
            if inspect.iscoroutinefunction(collector.poll):
                snapshot = await collector.poll()
            else:
                snapshot = await asyncio.to_thread(collector.poll)
        except Exception as exc:  # any source failure only degrades this collector
            error = f"{type(exc).__name__}: {exc}"
            # One line per change of state, not one per cycle.
            if previous.success or not previous.polled or previous.error != error:
                log.warning("collector %s failed: %s", collector.name, error)
            self.states[collector.name] = CollectorState(
                snapshot=None,
                success=False,
                duration_seconds=time.perf_counter() - started,
                last_success_timestamp=previous.last_success_timestamp,
                polled=True,
                error=error,
            )
            return
        if previous.polled and not previous.success:
            log.info("collector %s recovered", collector.name)
        self.states[collector.name] = CollectorState(
            snapshot=snapshot,
            success=True,
            duration_seconds=time.perf_counter() - started,
            last_success_timestamp=time.time(),
            polled=True,
        )

    async def _loop(self, collector: Collector) -> None:
        while True:
            started = time.monotonic()
            await self.poll_once(collector)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, collector.interval - elapsed))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(c), name=f"collector-{c.name}") for c in self.collectors
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for collector in self.collectors:
            try:
                collector.close()
            except Exception:  # closing is best effort at shutdown
                log.exception("closing collector %s failed", collector.name)
