"""URL-based helpers over ``exporter_process.RunningExporter`` for the kernels and host tests.

``value`` matches labels exactly (``exporter_process.value`` matches a subset), which the
zero-filled per-signal series need.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from exporter_process import AUTH, RunningExporter
from prometheus_client.parser import text_string_to_metric_families


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


def wait_for(check: Callable[[], object], timeout: float, message: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.25)
