"""One backoff for every source that retries by itself (NVML's initialisation, the hub)."""

from __future__ import annotations

import pynvml

from dlcourse_exporter.backoff import Backoff
from dlcourse_exporter.sources import nvml
from dlcourse_exporter.sources.nvml import NvmlSession, NvmlUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_up_to_the_longest_and_a_success_starts_over():
    clock = Clock()
    backoff = Backoff(1.0, 4.0, clock)
    waits = []
    for _ in range(5):
        backoff.failed()
        started = clock.now
        while not backoff.ready():
            clock.now += 0.5
        waits.append(clock.now - started)
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.succeeded()
    assert backoff.ready()
    backoff.failed()
    assert not backoff.ready()  # after a success the next failure waits `first` again


def test_nvml_is_initialised_again_only_when_its_backoff_allows(monkeypatch):
    clock, attempts = Clock(), []

    def no_driver() -> None:
        attempts.append(clock.now)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(nvml.pynvml, "nvmlInit", no_driver)
    session = NvmlSession(min_backoff=1.0, max_backoff=60.0, clock=clock)
    for tick in range(16):  # a cycle every second
        clock.now = float(tick)
        try:
            session.ensure()
        except NvmlUnavailable as exc:
            assert "NVML initialisation failed" in str(exc)
    assert attempts == [0.0, 1.0, 3.0, 7.0, 15.0]
