"""Runs every enabled collector's poll() in the background and keeps its latest result.

Scrapes only read what is stored here, so a slow NVML call, a large /proc or a hub that
times out never makes /metrics wait. Each collector has its own task, and a collector whose
poll blocks (NVML, /proc) runs it in its own thread, so one stuck source delays neither the
event loop nor the other collectors. Every poll has a deadline (``Collector.deadline``): a
poll past it marks its collector failed; a thread that is still stuck is not started again
until it returns, and the collector stays failed meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from .collectors.base import Collector
from .untrusted import log_text

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


class PollTimeout(Exception):
    """A poll that did not finish within its collector's deadline."""


class Scheduler:
    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self.states: dict[str, CollectorState] = {c.name: CollectorState() for c in collectors}
        self._tasks: list[asyncio.Task[None]] = []
        self._threads: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._running: dict[str, concurrent.futures.Future[Any]] = {}

    @property
    def ready(self) -> bool:
        """True once every collector has finished its first poll, failed or not."""
        return all(state.polled for state in self.states.values())

    async def poll_once(self, collector: Collector) -> None:
        started = time.perf_counter()
        previous = self.states[collector.name]
        try:
            snapshot = await asyncio.wait_for(self._poll(collector), collector.deadline)
        except Exception as exc:  # any source failure only degrades this collector
            if isinstance(exc, asyncio.TimeoutError):
                exc = PollTimeout(f"poll did not finish within {collector.deadline:g} s")
            error = f"{type(exc).__name__}: {exc}"
            # One line per change of state, not one per cycle.
            if previous.success or not previous.polled or previous.error != error:
                log.warning("collector %s failed: %s", collector.name, log_text(error))
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

    async def _poll(self, collector: Collector) -> Any:
        if inspect.iscoroutinefunction(collector.poll):
            return await collector.poll()
        running = self._running.get(collector.name)
        if running is not None and not running.done():
            # Same text as the timeout that left it running: nothing new to log.
            raise PollTimeout(f"poll did not finish within {collector.deadline:g} s")
        if collector.name not in self._threads:
            self._threads[collector.name] = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"collector-{collector.name}"
            )
        future = self._threads[collector.name].submit(collector.poll)
        self._running[collector.name] = future
        return await asyncio.wrap_future(future)

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
        for executor in self._threads.values():
            executor.shutdown(wait=False, cancel_futures=True)  # a stuck poll is abandoned
        for collector in self.collectors:
            try:
                collector.close()
            except Exception:  # closing is best effort at shutdown
                log.exception("closing collector %s failed", collector.name)
