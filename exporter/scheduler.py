"""Polls every source in the background, one cycle per interval, and keeps its latest result.

Scrapes only read what is stored here, so a slow NVML call, a large /proc or a hub that
times out never makes /metrics wait. Sources with the same interval share a cycle: a
source runs after the sources it ``needs`` (kernels and host after the walk of /proc) and
takes their fresh snapshots; the cycle's results are published together, so a scrape
never mixes two cycles and the exposition renders once per cycle (``generation``).

A source whose poll blocks (NVML, /proc) runs it in a thread of its own, so one stuck
source delays neither the event loop nor the others. Every poll has a deadline
(``Source.deadline``): a poll past it marks its source failed; a thread that is still
stuck is not started again until it returns, and the source stays failed meanwhile. A
source whose input failed fails too, without being polled; one it takes ``optionally`` is
handed over as None instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .sources.base import Source
from .untrusted import log_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceState:
    """What the last poll of one source left behind. ``began`` and ``ended`` are
    ``time.perf_counter()`` values; ``began`` is when the reading behind the snapshot began,
    its inputs' included (the walk of /proc before the kernels source's poll)."""

    snapshot: Any | None = None
    success: bool = False
    began: float = 0.0
    ended: float = 0.0
    last_success_timestamp: float | None = None
    polled: bool = False
    error: str | None = None


class PollTimeout(Exception):
    """A poll that did not finish within its source's deadline."""


class InputFailed(Exception):
    """A source this one needs failed in this cycle."""


def stages(sources: Sequence[Source]) -> Iterator[list[Source]]:
    """The sources in groups that can run at once, each after its inputs."""
    names = {source.name for source in sources}
    done: set[str] = set()
    waiting = list(sources)
    while waiting:
        ready = [s for s in waiting if all(n in done or n not in names for n in s.inputs)]
        if not ready:
            raise ValueError(f"sources that need each other: {[s.name for s in waiting]}")
        yield ready
        done |= {source.name for source in ready}
        waiting = [source for source in waiting if source not in ready]


class Scheduler:
    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self.states: dict[str, SourceState] = {s.name: SourceState() for s in self.sources}
        self.generation = 0  # counts the published cycles
        self._tasks: list[asyncio.Task[None]] = []
        self._threads: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._running: dict[str, concurrent.futures.Future[Any]] = {}

    @property
    def ready(self) -> bool:
        """True once every source has finished its first poll, failed or not."""
        return all(state.polled for state in self.states.values())

    async def tick(self, sources: Sequence[Source] | None = None) -> None:
        """Polls the sources (all by default) once, then publishes their states at once."""
        fresh: dict[str, SourceState] = {}
        for stage in stages(sources or self.sources):
            polled = await asyncio.gather(*(self._poll_once(s, fresh) for s in stage))
            fresh.update(zip((source.name for source in stage), polled, strict=True))
        self.states.update(fresh)
        self.generation += 1

    async def _poll_once(self, source: Source, fresh: dict[str, SourceState]) -> SourceState:
        began = time.perf_counter()
        previous = self.states[source.name]
        try:
            needed = [self._input(need, fresh) for need in source.needs]
            taken = {name: self._optional_input(name, fresh) for name in source.optionally}
            read = [*source.needs, *(name for name, got in taken.items() if got is not None)]
            began = min([began, *(self._state(name, fresh).began for name in read)])
            inputs = [*needed, *taken.values()]
            snapshot = await asyncio.wait_for(self._poll(source, inputs), source.deadline)
        except Exception as exc:  # any source failure only degrades this source
            if isinstance(exc, asyncio.TimeoutError):
                exc = PollTimeout(f"poll did not finish within {source.deadline:g} s")
            error = f"{type(exc).__name__}: {exc}"
            # One line per change of state, not one per cycle.
            if previous.success or not previous.polled or previous.error != error:
                log.warning("source %s failed: %s", source.name, log_text(error))
            return SourceState(
                snapshot=None,
                success=False,
                began=began,
                ended=time.perf_counter(),
                last_success_timestamp=previous.last_success_timestamp,
                polled=True,
                error=error,
            )
        if previous.polled and not previous.success:
            log.info("source %s recovered", source.name)
        return SourceState(
            snapshot=snapshot,
            success=True,
            began=began,
            ended=time.perf_counter(),
            last_success_timestamp=time.time(),
            polled=True,
        )

    def _state(self, name: str, fresh: dict[str, SourceState]) -> SourceState:
        return fresh.get(name) or self.states[name]

    def _input(self, name: str, fresh: dict[str, SourceState]) -> Any:
        state = self._state(name, fresh)
        if not state.success:
            raise InputFailed(f"its input {name} failed")
        return state.snapshot

    def _optional_input(self, name: str, fresh: dict[str, SourceState]) -> Any | None:
        state = fresh.get(name) or self.states.get(name)
        return state.snapshot if state is not None and state.success else None

    async def _poll(self, source: Source, inputs: list[Any]) -> Any:
        if inspect.iscoroutinefunction(source.poll):
            return await source.poll(*inputs)
        running = self._running.get(source.name)
        if running is not None and not running.done():
            # Same text as the timeout that left it running: nothing new to log.
            raise PollTimeout(f"poll did not finish within {source.deadline:g} s")
        if source.name not in self._threads:
            self._threads[source.name] = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"source-{source.name}"
            )
        future = self._threads[source.name].submit(source.poll, *inputs)
        self._running[source.name] = future
        return await asyncio.wrap_future(future)

    async def _loop(self, sources: list[Source], interval: float) -> None:
        while True:
            started = time.monotonic()
            await self.tick(sources)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, interval - elapsed))

    def start(self) -> None:
        """One cycle per distinct interval (the collection's, the hub's)."""
        by_interval: dict[float, list[Source]] = {}
        for source in self.sources:
            by_interval.setdefault(source.interval, []).append(source)
        self._tasks = [
            asyncio.create_task(self._loop(group, interval), name=f"cycle-{interval:g}s")
            for interval, group in by_interval.items()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._threads.values():
            executor.shutdown(wait=False, cancel_futures=True)  # a stuck poll is abandoned
        for source in self.sources:
            try:
                source.close()
            except Exception:  # closing is best effort at shutdown
                log.exception("closing source %s failed", source.name)
