"""The exposition, rendered at most once per cycle and format, and served from memory.

The first scrape after a cycle (``Scheduler.generation``) in a format renders it; later
scrapes of that cycle get the same bytes (and gzip, compressed once). Nothing is rendered
while nobody scrapes. Each collector's part is kept with the view it was rendered from,
and a collector whose view did not change reuses its part. The parts, in order: the
exporter's own health series, each collector's, and prometheus_client's ``process_*``.

Sample of the health series::

    dlcourse_exporter_build_info{version="0.1.0"} 1
    dlcourse_collector_success{collector="gpu"} 1
    dlcourse_collector_duration_seconds{collector="gpu"} 0.0021
    dlcourse_collector_last_success_timestamp_seconds{collector="gpu"} 1.764e+09

A collector counts as failed when one of its sources failed, or when its part cannot be
rendered: ``render()`` raised, a label value UTF-8 cannot encode (prometheus_client fails
as it encodes), or it has more than ``MAX_SERIES_PER_COLLECTOR`` series. Its metrics are
then left out; the others are served. Its duration runs from the start of the reading its
data comes from (the walk of /proc for the kernels and host collectors) to the end of its
last source's poll, when it last succeeded, so that its last success less its duration is
when that reading began.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric

from . import __version__
from .collectors.base import Collector
from .metricdefs import gauge
from .scheduler import Scheduler
from .untrusted import log_text

log = logging.getLogger(__name__)

# Far above a class of 20,000 hub users (about 6 series each): only a bug or a source
# lying about its size gets here.
MAX_SERIES_PER_COLLECTOR = 250_000
OPENMETRICS_EOF = b"# EOF\n"
GZIP_LEVEL = 6  # about as small as 9, in a third of the time

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

Encoder = Callable[[Any], bytes]


@dataclass(frozen=True)
class Format:
    """How a scrape wants its answer. ``key`` names the bytes: formats whose output is the
    same share it (OpenMetrics versions differ only in native histograms, which the
    exporter has none of), so a client cannot make the cache grow."""

    encoder: Encoder = field(compare=False)
    content_type: str = field(compare=False)
    key: tuple[str, str]

    @property
    def openmetrics(self) -> bool:
        return self.key[0] == "application/openmetrics-text"


def negotiate(accept: str) -> Format:
    """The format for an Accept header; any header prometheus_client cannot parse
    (``version=abc``) gets the plain text format, never an error."""
    try:
        encoder, content_type = choose_encoder(accept[:1024])
    except Exception:  # its parsing raises on malformed versions; the header is the client's
        encoder, content_type = generate_latest, CONTENT_TYPE_PLAIN_0_0_4
    params = dict(
        part.strip().partition("=")[::2] for part in content_type.split(";")[1:] if "=" in part
    )
    kind = content_type.split(";")[0].strip()
    return Format(encoder, content_type, (kind, params.get("escaping", "underscores")))


class Families:
    """Metric families as prometheus_client's encoders take them (anything with collect())."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


def encode(families: Iterable[Metric], fmt: Format) -> bytes:
    """One part of the exposition: OpenMetrics' end marker comes once, after all parts."""
    data = fmt.encoder(Families(families))
    return data.removesuffix(OPENMETRICS_EOF) if fmt.openmetrics else data


class Unservable(Exception):
    """A collector's part that cannot be served; str() says why."""


@dataclass
class Part:
    """One collector's rendering of one view, in each format asked for so far."""

    view: Any
    encoded: dict[tuple[str, str], bytes | Unservable] = field(default_factory=dict)


def count_series(families: list[Metric]) -> list[Metric]:
    series = sum(len(family.samples) for family in families)
    if series > MAX_SERIES_PER_COLLECTOR:
        raise Unservable(f"{series} series, more than the cap of {MAX_SERIES_PER_COLLECTOR}")
    return families


class Exposition:
    def __init__(self, scheduler: Scheduler, collectors: Sequence[Collector]) -> None:
        self.scheduler = scheduler
        self.collectors = list(collectors)
        self.process = ProcessCollector(registry=None)  # the exporter's own CPU and memory
        self._parts: dict[str, Part] = {}
        self._rendered: dict[tuple[tuple[str, str], bool], bytes] = {}  # this generation's
        self._generation = -1
        self._problems: dict[str, str | None] = {}  # logged once per change

    def render(self, fmt: Format, gzipped: bool = False) -> bytes:
        """The whole exposition of the latest cycle in this format, from memory if it was
        rendered already."""
        if self._generation != self.scheduler.generation:
            self._rendered, self._generation = {}, self.scheduler.generation
        if (fmt.key, gzipped) not in self._rendered:
            if gzipped:
                data = gzip.compress(self.render(fmt), GZIP_LEVEL, mtime=0)
            else:
                data = self._render(fmt)
            self._rendered[(fmt.key, gzipped)] = data
        return self._rendered[(fmt.key, gzipped)]

    def _render(self, fmt: Format) -> bytes:
        parts, failed = [], set()
        for collector in self.collectors:
            encoded = self._part(collector, fmt)
            if isinstance(encoded, Unservable):
                failed.add(collector.name)
                encoded = b""
            parts.append(encoded)
        health = encode(self._health(failed), fmt)
        own = encode(self.process.collect(), fmt)
        return b"".join([health, *parts, own, OPENMETRICS_EOF if fmt.openmetrics else b""])

    def view(self, collector: Collector) -> Any | None:
        """The collector's view of its sources' latest snapshots; None if one failed."""
        states = [self.scheduler.states[name] for name in collector.sources]
        if not all(state.success for state in states):
            return None
        return collector.view(*(state.snapshot for state in states))

    def _part(self, collector: Collector, fmt: Format) -> bytes | Unservable:
        view = self.view(collector)
        part = self._parts.get(collector.name)
        if part is None or part.view != view:
            part = self._parts[collector.name] = Part(view)
        if fmt.key not in part.encoded:
            try:
                part.encoded[fmt.key] = encode(count_series(list(collector.render(view))), fmt)
            except Unservable as exc:
                part.encoded[fmt.key] = exc
            except Exception as exc:  # a rendering bug must not take the other collectors down
                part.encoded[fmt.key] = Unservable(f"render failed: {type(exc).__name__}: {exc}")
        outcome = part.encoded[fmt.key]
        self._log_problem(collector.name, str(outcome) if isinstance(outcome, Unservable) else None)
        return outcome

    def _log_problem(self, name: str, problem: str | None) -> None:
        if problem and self._problems.get(name) != problem:
            log.warning("collector %s not served: %s", name, log_text(problem))
        self._problems[name] = problem

    def _health(self, failed: set[str]) -> Iterator[Metric]:
        build, success, duration, last = (metric.family() for metric in METRICS)
        build.add_metric([__version__], 1)
        for collector in self.collectors:
            states = [self.scheduler.states[name] for name in collector.sources]
            read = all(state.success for state in states)
            ok = read and collector.name not in failed
            success.add_metric([collector.name], 1.0 if ok else 0.0)
            took = max(s.ended for s in states) - min(s.began for s in states)
            duration.add_metric([collector.name], max(took, 0.0))
            stamps = [state.last_success_timestamp for state in states]
            if None not in stamps:
                # Complete when its last source ended; else, at best, its oldest success.
                when = max(stamps) if read else min(stamps)  # type: ignore[type-var]
                last.add_metric([collector.name], when)
        yield from (build, success, duration, last)

    def families(self, names: Collection[str] | None = None) -> Iterator[Metric]:
        """The collectors' families that /metrics serves (for the class-status view), of
        the named collectors only if names are given."""
        text = negotiate("")
        for collector in self.collectors:
            if names is not None and collector.name not in names:
                continue
            if not isinstance(self._part(collector, text), Unservable):
                yield from collector.render(self.view(collector))
