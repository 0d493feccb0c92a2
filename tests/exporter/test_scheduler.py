"""The scheduler isolates collectors: one failing source degrades only itself."""

import asyncio
import logging

from prometheus_client.core import GaugeMetricFamily

from dlcourse_exporter import __version__
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
