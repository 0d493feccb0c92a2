"""Metric definitions: name, type, labels and help in one place.

Collectors build fresh families from these on every scrape, and docs/metrics.md is
generated from them (``python -m dlcourse_exporter.docs``), so the documentation cannot
drift from what is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

FROM_LAST = " Values come from the exporter's last collection."


@dataclass(frozen=True)
class MetricDef:
    name: str  # counters without the _total suffix, as prometheus_client wants them
    kind: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...] = ()

    @property
    def exposed_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        family_type = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        return family_type(self.name, self.help + FROM_LAST, labels=list(self.labels))


def gauge(name: str, help_text: str, *labels: str) -> MetricDef:
    return MetricDef(name, "gauge", help_text, labels)


def counter(name: str, help_text: str, *labels: str) -> MetricDef:
    return MetricDef(name, "counter", help_text, labels)
