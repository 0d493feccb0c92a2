"""The contract of a named collector: snapshots in, metric families out, no I/O.

A collector names the sources whose snapshots it renders (``sources``), declares its
metrics (``metrics``, from which docs/metrics.md is generated) and its settings
(``options``, turned into flags by ``config.py``). Each scrape cycle:

- ``view(*snapshots)`` picks what it shows from its sources' latest snapshots (pure and
  cheap); a view equal to the last one lets the exposition reuse the rendered part;
- ``render(view)`` turns it into fresh metric families. ``view`` is None when one of its
  sources failed or has not answered yet, so a collector can still say ``..._up 0``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

from ..metricdefs import MetricDef
from ..options import Option


class Collector(ABC):
    name: str = ""
    description: str = ""
    sources: tuple[str, ...] = ()
    metrics: tuple[MetricDef, ...] = ()
    options: tuple[Option, ...] = ()
    on_by_default: bool = True

    def view(self, *snapshots: Any) -> Any:
        """What render() needs from the sources' snapshots; by default all of them."""
        return snapshots[0] if len(snapshots) == 1 else snapshots

    @abstractmethod
    def render(self, view: Any | None) -> Iterable[Metric]:
        """Metric families for the latest view (None: a source is unavailable)."""

    def enabled_by_default(self, values: Mapping[str, Any]) -> bool:
        """Whether it runs when no flag, variable or file says; values: every setting."""
        return self.on_by_default

    def problems(self, values: Mapping[str, Any], enabled: bool, explicit: bool) -> list[str]:
        """What is wrong with its settings, one short line each (checked at start)."""
        return []
