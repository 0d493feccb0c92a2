"""Renders the scheduler's stored snapshots into one Prometheus registry.

Sample of the exporter's own health series::

    dlcourse_exporter_build_info{version="0.1.0"} 1
    dlcourse_collector_success{collector="gpu"} 1
    dlcourse_collector_duration_seconds{collector="gpu"} 0.0021
    dlcourse_collector_last_success_timestamp_seconds{collector="gpu"} 1.764e+09
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric

from . import __version__
from .metricdefs import gauge
from .scheduler import Scheduler

log = logging.getLogger(__name__)

METRICS = (
    gauge("dlcourse_exporter_build_info", "The exporter's version.", "version"),
    gauge(
        "dlcourse_collector_success",
        "1 if the collector's last collection succeeded, else 0.",
        "collector",
    ),
    gauge(
        "dlcourse_collector_duration_seconds",
        "Duration of the collector's last collection.",
        "collector",
    ),
    gauge(
        "dlcourse_collector_last_success_timestamp_seconds",
        "Unix time of the collector's last successful collection.",
        "collector",
    ),
)


class SnapshotExposition:
    """A prometheus_client custom collector over the scheduler's latest results."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        yield from self._health()
        for collector in self.scheduler.collectors:
            state = self.scheduler.states[collector.name]
            try:
                yield from collector.render(state.snapshot if state.success else None)
            except Exception:  # a rendering bug must not take the other collectors down
                log.exception("rendering collector %s failed", collector.name)

    def _health(self) -> Iterator[Metric]:
        build, success, duration, last = (metric.family() for metric in METRICS)
        build.add_metric([__version__], 1)
        for name, state in self.scheduler.states.items():
            success.add_metric([name], 1.0 if state.success else 0.0)
            duration.add_metric([name], state.duration_seconds)
            if state.last_success_timestamp is not None:
                last.add_metric([name], state.last_success_timestamp)
        yield from (build, success, duration, last)


def build_registry(scheduler: Scheduler) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotExposition(scheduler))
    # The exporter's own CPU and memory (process_*), as every Prometheus exporter has.
    ProcessCollector(registry=registry)
    return registry
