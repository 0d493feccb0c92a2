"""A collection cycle's CPU time, measured in this process with the exporter's own code.

The sources the default collectors need are built from the exporter's configuration and
polled cycle after cycle by its scheduler; ``time.process_time()`` counts every thread of
this process (NVML and /proc are read in threads). The first scrape after a cycle also
renders the exposition once: measured apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from dlcourse_exporter.collectors import COLLECTORS
from dlcourse_exporter.config import load
from dlcourse_exporter.exposition import Exposition, negotiate
from dlcourse_exporter.scheduler import Scheduler
from dlcourse_exporter.sources import build_sources


def cycle_and_render_ms(args: Sequence[str], cycles: int) -> tuple[float, float]:
    """(CPU ms of one cycle, CPU ms of rendering it once as text), each a mean."""
    config, _ = load(list(args), environ={})
    collectors = [c for c in COLLECTORS if c.name in config.collectors]
    scheduler = Scheduler(build_sources(config.values, {s for c in collectors for s in c.sources}))
    exposition = Exposition(scheduler, collectors)

    async def measure() -> tuple[float, float]:
        for _ in range(2):  # warm up: NVML initialised, every process's identity read
            await scheduler.tick()
        collect = render = 0.0
        for _ in range(cycles):
            started = time.process_time()
            await scheduler.tick()
            rendered = time.process_time()
            exposition.render(negotiate(""))
            collect += rendered - started
            render += time.process_time() - rendered
        await scheduler.stop()
        return collect / cycles * 1000, render / cycles * 1000

    return asyncio.run(measure())
