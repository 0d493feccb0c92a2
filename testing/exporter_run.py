"""URL-based helpers over ``exporter.RunningExporter`` for the kernels and host tests.

``value`` matches labels exactly (``exporter.value`` matches a subset), which the
zero-filled per-signal series need.
"""

from __future__ import annotations

import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .alerting import wait_until as wait_for  # one waiting loop for every helper
from .exporter import AUTH, RunningExporter, Samples, parse_samples, poll_ended, poll_started


@contextmanager
def running_exporter(*args: str) -> Iterator[str]:
    """Starts the real exporter on a free localhost port; yields its /metrics URL."""
    with tempfile.TemporaryDirectory() as directory:
        exporter = RunningExporter(args, log_path=Path(directory) / "exporter.log")
        try:
            yield f"{exporter.url}/metrics"
        finally:
            exporter.stop()
            print(exporter.log())  # shown when a test fails


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from one scrape."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=5) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(url: str, name: str, **labels: str) -> float | None:
    return samples(url).get((name, tuple(sorted(labels.items()))))


def wait_poll_after(url: str, collector: str, seconds: float, timeout: float = 60) -> None:
    """Waits until a poll of the collector that began `seconds` after the last one so far
    ended has succeeded: it saw all that happened before now, `seconds` later."""

    def scrape() -> Samples:
        request = urllib.request.Request(url, headers=AUTH)
        with urllib.request.urlopen(request, timeout=5) as response:
            return parse_samples(response.read().decode())

    moment = poll_ended(scrape(), collector) + seconds
    wait_for(
        lambda: poll_started(scrape(), collector) >= moment,
        timeout,
        f"no {collector} poll began after {moment:.1f}",
    )
