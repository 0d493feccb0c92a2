"""The exposition: rendered once per cycle and format, parts reused, bad parts left out."""

import asyncio
import gzip
import json
import logging

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from dlcourse_exporter import exposition as exposition_module
from dlcourse_exporter.classview import class_status
from dlcourse_exporter.collectors.base import Collector
from dlcourse_exporter.exposition import Exposition, negotiate
from dlcourse_exporter.scheduler import Scheduler
from dlcourse_exporter.sources.base import Source
from dlcourse_testing.exporter import parse_samples, value

TEXT = negotiate("")
OPENMETRICS = negotiate("application/openmetrics-text; version=1.0.0")
OM = "application/openmetrics-text"


class Counting(Source):
    """A healthy source whose snapshot the test sets."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.snapshot = 1

    def poll(self) -> int:
        return self.snapshot


class Rendering(Collector):
    """Renders its source's snapshot, misbehaving as the test says; counts its renders."""

    def __init__(self, name: str, label: str = "ok", fails: bool = False, series: int = 1):
        self.name, self.sources = name, (name,)
        self.label, self.fails, self.series = label, fails, series
        self.renders = 0

    def render(self, view):
        self.renders += 1
        if self.fails:
            raise KeyError("bug")
        family = GaugeMetricFamily(f"test_{self.name}_info", "info", labels=["user", "n"])
        for n in range(self.series):
            family.add_metric([self.label, str(n)], view)
        yield family


def polled(*collectors: Rendering) -> tuple[Scheduler, Exposition]:
    scheduler = Scheduler([Counting(c.name) for c in collectors])
    asyncio.run(scheduler.tick())
    return scheduler, Exposition(scheduler, collectors)


def test_a_render_that_raises_marks_only_its_collector_failed(caplog):
    # Issue 11, Why 9: a render() that raised left dlcourse_collector_success at 1.
    scheduler, exposition = polled(Rendering("good"), Rendering("buggy", fails=True))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            text = exposition.render(TEXT).decode()
            asyncio.run(scheduler.tick())
    assert 'dlcourse_collector_success{collector="buggy"} 0.0' in text
    assert 'dlcourse_collector_success{collector="good"} 1.0' in text
    assert "test_good_info" in text
    assert len([r for r in caplog.records if "collector buggy not served" in r.getMessage()]) == 1


def test_a_label_utf8_cannot_encode_marks_only_its_collector_failed():
    # Issue 11, Why 3: prometheus_client fails at encode time, after render() returned, for
    # every collector at once; both formats, and the class status built from the same samples.
    _, exposition = polled(Rendering("good"), Rendering("bad", label="\ud800"))
    for fmt in (TEXT, OPENMETRICS):
        text = exposition.render(fmt).decode()
        assert 'dlcourse_collector_success{collector="bad"} 0.0' in text
        assert 'test_good_info{n="0",user="ok"} 1.0' in text
        assert "test_bad_info" not in text
    assert json.dumps(class_status(exposition.families()), ensure_ascii=False).encode()


def test_too_many_series_marks_the_collector_failed(monkeypatch):
    monkeypatch.setattr(exposition_module, "MAX_SERIES_PER_COLLECTOR", 10)
    _, exposition = polled(Rendering("good", series=10), Rendering("flood", series=11))
    seen = parse_samples(exposition.render(TEXT).decode())
    assert value(seen, "dlcourse_collector_success", collector="flood") == 0
    assert value(seen, "dlcourse_collector_success", collector="good") == 1
    assert value(seen, "test_flood_info", user="ok", n="0") is None


def test_rendered_once_per_cycle_and_format_and_reused_while_unchanged():
    still, moving = Rendering("still"), Rendering("moving")
    scheduler, exposition = polled(still, moving)
    first = exposition.render(TEXT)
    assert exposition.render(TEXT) is first  # the same bytes, from memory
    assert (still.renders, moving.renders) == (1, 1)

    scheduler.sources[1].snapshot = 2
    asyncio.run(scheduler.tick())
    second = exposition.render(TEXT)
    assert second is not first and b'test_moving_info{n="0",user="ok"} 2.0' in second
    assert (still.renders, moving.renders) == (1, 2)  # an unchanged view keeps its part

    exposition.render(OPENMETRICS)
    assert (still.renders, moving.renders) == (2, 3)  # each format rendered once


def test_both_formats_parse_and_gzip_is_the_same_bytes_compressed():
    _, exposition = polled(Rendering("a"), Rendering("b"))
    om = exposition.render(OPENMETRICS).decode()
    assert om.count("# EOF") == 1 and om.endswith("# EOF\n")
    names = {family.name for family in parse_om(om)}
    assert {"test_a_info", "test_b_info", "dlcourse_collector_success"} <= names
    zipped = exposition.render(TEXT, gzipped=True)
    assert gzip.decompress(zipped) == exposition.render(TEXT)
    assert exposition.render(TEXT, gzipped=True) is zipped


@pytest.mark.parametrize(
    ("accept", "key"),
    [
        ("", ("text/plain", "underscores")),
        ("text/plain;version=0.0.4", ("text/plain", "underscores")),
        (f"{OM}; version=1.0.0", (OM, "underscores")),
        (f"{OM}; version=1.0.7", (OM, "underscores")),
        (f"{OM}; version=abc", ("text/plain", "underscores")),
        (f"{OM};version=1.0.0;escaping=allow-utf-8", (OM, "allow-utf-8")),
    ],
)
def test_formats_that_render_the_same_share_their_bytes(accept, key):
    # Any client can send any version: the cache is keyed by what changes the output.
    assert negotiate(accept).key == key
