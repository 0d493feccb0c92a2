"""The scheduler isolates collectors: one failing source degrades only itself."""

import asyncio
import json
import logging
import threading
import time

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from dlcourse_exporter import __version__, exposition
from dlcourse_exporter.classview import class_status
from dlcourse_exporter.collectors.base import Collector
from dlcourse_exporter.exposition import build_registry
from dlcourse_exporter.scheduler import Scheduler


class Flaky(Collector):
    """A source whose health the test switches."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.broken = False
        self.polls = 0

    def poll(self) -> int:
        self.polls += 1
        if self.broken:
            raise OSError("source unreachable")
        return self.polls

    def render(self, snapshot):
        family = GaugeMetricFamily(f"test_{self.name}_up", "up", labels=[])
        family.add_metric([], 0 if snapshot is None else 1)
        yield family


def test_failure_is_isolated_logged_once_and_recovers(caplog):
    good, bad = Flaky("good"), Flaky("bad")
    scheduler = Scheduler([good, bad])
    registry = build_registry(scheduler)
    assert not scheduler.ready

    async def cycle():
        await asyncio.gather(scheduler.poll_once(good), scheduler.poll_once(bad))

    bad.broken = True
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            asyncio.run(cycle())
    assert scheduler.ready
    assert [r.getMessage() for r in caplog.records].count(
        "collector bad failed: OSError: source unreachable"
    ) == 1
    value = registry.get_sample_value
    assert value("dlcourse_collector_success", {"collector": "bad"}) == 0
    assert value("dlcourse_collector_success", {"collector": "good"}) == 1
    assert value("test_bad_up") == 0 and value("test_good_up") == 1
    assert value("dlcourse_collector_last_success_timestamp_seconds", {"collector": "bad"}) is None

    bad.broken = False
    asyncio.run(cycle())
    assert value("dlcourse_collector_success", {"collector": "bad"}) == 1
    assert value("test_bad_up") == 1
    assert value("dlcourse_exporter_build_info", {"version": __version__}) == 1


class Rendering(Collector):
    """A healthy source whose render() misbehaves as the test says."""

    def __init__(self, name: str, label: str = "ok", fails: bool = False, series: int = 1) -> None:
        self.name, self.label, self.fails, self.series = name, label, fails, series

    def poll(self) -> int:
        return 1

    def render(self, snapshot):
        if self.fails:
            raise KeyError("bug")
        family = GaugeMetricFamily(f"test_{self.name}_info", "info", labels=["user", "n"])
        for n in range(self.series):
            family.add_metric([self.label, str(n)], 1)
        yield family


def polled(*collectors: Collector) -> tuple[Scheduler, object]:
    scheduler = Scheduler(list(collectors))
    for collector in collectors:
        asyncio.run(scheduler.poll_once(collector))
    return scheduler, build_registry(scheduler)


def test_a_render_that_raises_marks_only_its_collector_failed(caplog):
    # Why 9: a render() that raised left dlcourse_collector_success at 1.
    scheduler, registry = polled(Rendering("good"), Rendering("buggy", fails=True))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            text = generate_latest(registry).decode()
    assert 'dlcourse_collector_success{collector="buggy"} 0.0' in text
    assert 'dlcourse_collector_success{collector="good"} 1.0' in text
    assert "test_good_info" in text
    assert len([r for r in caplog.records if "collector buggy not served" in r.getMessage()]) == 1


def test_a_label_utf8_cannot_encode_marks_only_its_collector_failed():
    # Why 3: prometheus_client fails at encode time, after render() returned, for every
    # collector at once; both formats, and the class status built from the same samples.
    scheduler, registry = polled(Rendering("good"), Rendering("bad", label="\ud800"))
    for encode in (generate_latest, generate_openmetrics):
        text = encode(registry).decode()
        assert 'dlcourse_collector_success{collector="bad"} 0.0' in text
        assert 'test_good_info{n="0",user="ok"} 1.0' in text
        assert "test_bad_info" not in text
    assert json.dumps(class_status(registry.collect()), ensure_ascii=False).encode()


def test_too_many_series_marks_the_collector_failed(monkeypatch):
    monkeypatch.setattr(exposition, "MAX_SERIES_PER_COLLECTOR", 10)
    scheduler, registry = polled(Rendering("good", series=10), Rendering("flood", series=11))
    assert registry.get_sample_value("dlcourse_collector_success", {"collector": "flood"}) == 0
    assert registry.get_sample_value("dlcourse_collector_success", {"collector": "good"}) == 1
    assert registry.get_sample_value("test_flood_info", {"user": "ok", "n": "0"}) is None


class Hanging(Collector):
    """A source whose call blocks, as a hung NVML call does, until the test releases it."""

    name = "hanging"
    deadline = 0.5

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def poll(self) -> int:
        self.calls += 1
        self.release.wait(30)
        return self.calls

    def render(self, snapshot):
        return []


def test_a_hung_poll_fails_its_collector_at_the_deadline_and_blocks_nothing():
    # Why 9: no poll had a timeout, so a hung NVML call froze that collector's data silently.
    hanging, good = Hanging(), Flaky("good")
    scheduler = Scheduler([hanging, good])
    registry = build_registry(scheduler)

    async def cycle() -> float:
        started = time.monotonic()
        await asyncio.gather(scheduler.poll_once(hanging), scheduler.poll_once(good))
        return time.monotonic() - started

    try:
        assert asyncio.run(cycle()) < 5
        value = registry.get_sample_value
        assert value("dlcourse_collector_success", {"collector": "hanging"}) == 0
        assert value("dlcourse_collector_success", {"collector": "good"}) == 1
        assert "did not finish within 0.5 s" in scheduler.states["hanging"].error
        # Still stuck: no second thread is started, the collector stays failed.
        asyncio.run(cycle())
        assert hanging.calls == 1 and good.polls == 2
        assert value("dlcourse_collector_success", {"collector": "hanging"}) == 0
    finally:
        hanging.release.set()
    deadline = time.monotonic() + 10
    while scheduler.states["hanging"].success is False and time.monotonic() < deadline:
        asyncio.run(scheduler.poll_once(hanging))  # the stuck call returned: polls resume
    assert registry.get_sample_value("dlcourse_collector_success", {"collector": "hanging"}) == 1
