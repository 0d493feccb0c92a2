"""GPU time as counters, through the real exporter: two students share one stand-in GPU with
known square-wave loads, changed in the scenario while the exporter runs; each gets their
own GPU-seconds and memory byte-seconds, within 5 % of the integral of what was written.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from dataclasses import dataclass, field

import pytest

from dlcourse_testing.exporter import Samples, poll_started, value
from fakenvml import Gpu, Process, Scenario

pytestmark = pytest.mark.live

GIB = 1024**3
MEASURED_SECONDS = 36.0
TOLERANCE = 0.05


@dataclass(frozen=True)
class SquareWave:
    """on for `on` seconds, off for the rest of `period`: (utilization %, memory) each."""

    period: float
    on: float
    high: tuple[int, int]
    low: tuple[int, int]

    def at(self, elapsed: float) -> tuple[int, int]:
        return self.high if elapsed % self.period < self.on else self.low

    def edges(self, until: float) -> list[float]:
        times, start = [], 0.0
        while start < until:
            times += [start, start + self.on]
            start += self.period
        return times


ADA = SquareWave(period=4.0, on=2.0, high=(60, 2 * GIB), low=(0, GIB))
BOB = SquareWave(period=3.0, on=1.0, high=(90, 3 * GIB), low=(10, 3 * GIB))


@dataclass
class Written:
    """What the test wrote, when: the truth the counters are checked against."""

    times: list[float] = field(default_factory=list)  # wall clock, after each write
    values: list[dict[str, tuple[int, int]]] = field(default_factory=list)

    def integral(self, user: str, start: float, end: float) -> tuple[float, float]:
        """(GPU-seconds, byte-seconds) of the step function between start and end."""
        busy = memory = 0.0
        first = max(bisect_right(self.times, start) - 1, 0)
        for i in range(first, len(self.times)):
            left = max(self.times[i], start)
            right = min(self.times[i + 1] if i + 1 < len(self.times) else end, end)
            if right > left:
                util, held = self.values[i][user]
                busy += (right - left) * util / 100
                memory += (right - left) * held
        return busy, memory


def play(pids: dict[str, int], path, written: Written, stop: threading.Event) -> None:
    """Writes the scenario at every edge of either wave (the load generator: time is the
    signal here, not a wait)."""
    began = time.monotonic()
    edges = sorted(set(ADA.edges(600) + BOB.edges(600)))
    for edge in edges:
        if stop.wait(max(0.0, began + edge - time.monotonic())):
            return
        now = {"ada": ADA.at(edge), "bob": BOB.at(edge)}
        Scenario(
            gpus=[
                Gpu(
                    memory_total=40 * GIB,
                    processes=[Process(pids[u], now[u][1], sm_util=now[u][0]) for u in now],
                )
            ]
        ).write(path)
        written.times.append(time.time())
        written.values.append(now)


def counters(samples: Samples, user: str) -> tuple[float, float]:
    busy = value(samples, "dlcourse_user_gpu_seconds_total", user=user)
    memory = value(samples, "dlcourse_user_gpu_memory_byte_seconds_total", user=user)
    assert busy is not None and memory is not None, f"no GPU time for {user}"
    return busy, memory


def test_two_students_sharing_a_gpu_each_get_their_own_gpu_time(
    run_exporter, scenario_path, sleeper
):
    pids = {user: sleeper(hub_user=user) for user in ("ada", "bob")}
    written, stop = Written(), threading.Event()
    player = threading.Thread(target=play, args=(pids, scenario_path, written, stop))
    player.start()
    try:
        exporter = run_exporter("--collection.interval=0.5")
        first = exporter.wait_for(
            lambda s: value(s, "dlcourse_user_gpu_seconds_total", user="bob") is not None,
            what="GPU time for both students",
        )
        start = poll_started(first, "students")
        last = exporter.wait_for(
            lambda s: poll_started(s, "students") >= start + MEASURED_SECONDS,
            timeout=MEASURED_SECONDS + 30,
            what=f"{MEASURED_SECONDS:g} s of GPU time",
        )
        end = poll_started(last, "students")
    finally:
        stop.set()
        player.join()
    for user in ("ada", "bob"):
        expected = written.integral(user, start, end)
        measured = [b - a for a, b in zip(counters(first, user), counters(last, user), strict=True)]
        for what, want, got in zip(
            ("GPU-seconds", "byte-seconds"), expected, measured, strict=True
        ):
            print(f"{user} {what}: {got:.4g} measured, {want:.4g} written ({got / want - 1:+.2%})")
            assert abs(got - want) <= TOLERANCE * want, (
                f"{user} {what}: measured {got:.4g}, expected {want:.4g} "
                f"({(got - want) / want:+.1%}) over {end - start:.1f} s"
            )
