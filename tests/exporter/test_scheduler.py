"""The scheduler isolates sources: one failing or hung source degrades only itself and
what renders it, and a source that needs another runs after it in the same cycle."""

import asyncio
import logging
import threading
import time

from prometheus_client.core import GaugeMetricFamily

from dlcourse_exporter.collectors.base import Collector
from dlcourse_exporter.exposition import Exposition, negotiate
from dlcourse_exporter.scheduler import Scheduler
from dlcourse_exporter.sources.base import Source
from dlcourse_testing.exporter import parse_samples, value


def scrape(exposition: Exposition):
    return parse_samples(exposition.render(negotiate("")).decode())


class Flaky(Source):
    """A source whose health the test switches."""

    def __init__(
        self, name: str, needs: tuple[str, ...] = (), optionally: tuple[str, ...] = ()
    ) -> None:
        self.name, self.needs, self.optionally = name, needs, optionally
        self.broken = False
        self.polls: list[tuple] = []

    def poll(self, *inputs) -> int:
        self.polls.append(inputs)
        if self.broken:
            raise OSError("source unreachable")
        return len(self.polls)


class Up(Collector):
    """Renders test_<name>_up: 1 while its sources answer."""

    def __init__(self, name: str, *sources: str) -> None:
        self.name, self.sources = name, sources or (name,)

    def render(self, view):
        family = GaugeMetricFamily(f"test_{self.name}_up", "up", labels=[])
        family.add_metric([], 0 if view is None else 1)
        yield family


def test_failure_is_isolated_logged_once_and_recovers(caplog):
    good, bad = Flaky("good"), Flaky("bad")
    scheduler = Scheduler([good, bad])
    exposition = Exposition(scheduler, [Up("good"), Up("bad"), Up("both", "good", "bad")])
    assert not scheduler.ready

    bad.broken = True
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            asyncio.run(scheduler.tick())
    assert scheduler.ready
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("source bad failed: OSError: source unreachable") == 1
    seen = scrape(exposition)
    assert value(seen, "dlcourse_collector_success", collector="bad") == 0
    assert value(seen, "dlcourse_collector_success", collector="good") == 1
    assert value(seen, "dlcourse_collector_success", collector="both") == 0
    assert value(seen, "test_bad_up") == 0 and value(seen, "test_good_up") == 1
    assert value(seen, "dlcourse_collector_last_success_timestamp_seconds", collector="bad") is None

    bad.broken = False
    with caplog.at_level(logging.INFO):
        asyncio.run(scheduler.tick())
    seen = scrape(exposition)
    assert value(seen, "dlcourse_collector_success", collector="bad") == 1
    assert value(seen, "dlcourse_collector_success", collector="both") == 1
    assert value(seen, "test_bad_up") == 1
    assert "source bad recovered" in [r.getMessage() for r in caplog.records]


def test_a_source_gets_what_it_needs_from_the_same_cycle_or_fails_with_it():
    table, kernels = Flaky("table"), Flaky("kernels", needs=("table",))
    scheduler = Scheduler([table, kernels])
    asyncio.run(scheduler.tick())
    asyncio.run(scheduler.tick())
    assert kernels.polls == [(1,), (2,)]  # the table of its own cycle, not the last one
    # Its data began with the table's reading: that is when its collection began.
    assert scheduler.states["kernels"].began == scheduler.states["table"].began
    assert scheduler.states["kernels"].ended >= scheduler.states["table"].ended
    table.broken = True
    asyncio.run(scheduler.tick())
    assert len(kernels.polls) == 2  # not polled without its input
    assert scheduler.states["kernels"].error == "InputFailed: its input table failed"
    assert scheduler.states["kernels"].last_success_timestamp is not None


def test_a_source_takes_what_it_takes_optionally_or_none_and_is_still_polled():
    table, nvml = Flaky("table"), Flaky("nvml")
    students = Flaky("students", needs=("table",), optionally=("nvml", "absent"))
    scheduler = Scheduler([students, nvml, table])  # in any order: it runs after its inputs
    asyncio.run(scheduler.tick())
    assert students.polls == [(1, 1, None)]  # a source nobody built is None
    nvml.broken = True
    asyncio.run(scheduler.tick())
    assert students.polls[-1] == (2, None, None)
    assert scheduler.states["students"].success
    table.broken = True
    asyncio.run(scheduler.tick())
    assert len(students.polls) == 2  # what it needs, it still fails without
    assert scheduler.states["students"].error == "InputFailed: its input table failed"


class Hanging(Source):
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


def test_a_hung_poll_fails_its_source_at_the_deadline_and_blocks_nothing():
    # Issue 11, Why 9: no poll had a timeout, so a hung NVML call froze that collector's
    # data silently.
    hanging, good = Hanging(), Flaky("good")
    scheduler = Scheduler([hanging, good])
    exposition = Exposition(scheduler, [Up("hanging"), Up("good")])

    def cycle() -> float:
        started = time.monotonic()
        asyncio.run(scheduler.tick())
        return time.monotonic() - started

    def success(name: str) -> float | None:
        return value(scrape(exposition), "dlcourse_collector_success", collector=name)

    try:
        assert cycle() < 5
        assert success("hanging") == 0 and success("good") == 1
        assert "did not finish within 0.5 s" in scheduler.states["hanging"].error
        # Still stuck: no second thread is started, the source stays failed.
        cycle()
        assert hanging.calls == 1 and len(good.polls) == 2
        assert success("hanging") == 0
    finally:
        hanging.release.set()
    deadline = time.monotonic() + 10
    while not scheduler.states["hanging"].success and time.monotonic() < deadline:
        asyncio.run(scheduler.tick([hanging]))  # the stuck call returned: polls resume
    assert success("hanging") == 1


def test_a_cycle_is_published_at_once():
    first, second = Flaky("first"), Flaky("second", needs=("first",))
    scheduler = Scheduler([first, second])
    generations = []

    async def watch_then_tick() -> None:
        async def watch() -> None:
            while not scheduler.ready:
                generations.append((scheduler.generation, dict(scheduler.states)))
                await asyncio.sleep(0)

        await asyncio.gather(watch(), scheduler.tick())

    asyncio.run(watch_then_tick())
    # While the cycle ran, nothing of it was visible: both states appear together.
    assert all(g == 0 and not s["first"].polled for g, s in generations)
    assert scheduler.generation == 1 and scheduler.states["second"].snapshot == 1
