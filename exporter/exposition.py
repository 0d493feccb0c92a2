"""Renders the scheduler's stored snapshots into one Prometheus registry.

Sample of the exporter's own health series::

    dlcourse_exporter_build_info{version="0.1.0"} 1
    dlcourse_collector_success{collector="gpu"} 1
    dlcourse_collector_duration_seconds{collector="gpu"} 0.0021
    dlcourse_collector_last_success_timestamp_seconds{collector="gpu"} 1.764e+09

A collector counts as failed for a scrape when its last poll failed, or when its output
cannot be served: ``render()`` raised, a label value is not valid UTF-8 (prometheus_client
would only fail later, encoding the whole scrape), or it has more than
``MAX_SERIES_PER_COLLECTOR`` series. Its metrics are then left out; the others are served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric

from . import __version__
from .collectors.base import Collector
from .metricdefs import gauge
from .scheduler import CollectorState, Scheduler
from .untrusted import log_text

log = logging.getLogger(__name__)

# Far above a class of 20,000 hub users (about 6 series each): only a bug or a source
# lying about its size gets here.
MAX_SERIES_PER_COLLECTOR = 250_000

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


def output_problem(families: Iterable[Metric]) -> str | None:
    """Why these families cannot be served, or None."""
    series = 0
    for family in families:
        series += len(family.samples)
        for sample in family.samples:
            for value in sample.labels.values():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return f"a label value of {family.name} is not valid UTF-8"
    if series > MAX_SERIES_PER_COLLECTOR:
        return f"{series} series, more than the cap of {MAX_SERIES_PER_COLLECTOR}"
    return None


def rendered(collector: Collector, state: CollectorState) -> tuple[list[Metric], str | None]:
    """The collector's families for this scrape, or none and why."""
    try:
        families = list(collector.render(state.snapshot if state.success else None))
    except Exception as exc:  # a rendering bug must not take the other collectors down
        return [], f"render failed: {type(exc).__name__}: {exc}"
    problem = output_problem(families)
    return ([], problem) if problem else (families, None)


class SnapshotExposition:
    """A prometheus_client custom collector over the scheduler's latest results."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._problems: dict[str, str | None] = {}  # logged once per change

    def collect(self) -> Iterator[Metric]:
        outputs, failed = [], set()
        for collector in self.scheduler.collectors:
            families, problem = rendered(collector, self.scheduler.states[collector.name])
            if problem and self._problems.get(collector.name) != problem:
                log.warning("collector %s not served: %s", collector.name, log_text(problem))
            self._problems[collector.name] = problem
            if problem:
                failed.add(collector.name)
            outputs += families
        yield from self._health(failed)
        yield from outputs

    def _health(self, failed: set[str]) -> Iterator[Metric]:
        build, success, duration, last = (metric.family() for metric in METRICS)
        build.add_metric([__version__], 1)
        for name, state in self.scheduler.states.items():
            success.add_metric([name], 1.0 if state.success and name not in failed else 0.0)
            duration.add_metric([name], state.duration_seconds)
            if state.last_success_timestamp is not None:
                last.add_metric([name], state.last_success_timestamp)
        yield from (build, success, duration, last)


def negotiate(accept: str) -> tuple[Callable[[CollectorRegistry], bytes], str]:
    """The encoder and content type for an Accept header; any header prometheus_client cannot
    parse (``version=abc``) gets the plain text format, never an error."""
    try:
        return choose_encoder(accept[:1024])
    except Exception:  # its parsing raises on malformed versions; the header is the client's
        return generate_latest, CONTENT_TYPE_PLAIN_0_0_4


def build_registry(scheduler: Scheduler) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotExposition(scheduler))
    # The exporter's own CPU and memory (process_*), as every Prometheus exporter has.
    ProcessCollector(registry=registry)
    return registry
