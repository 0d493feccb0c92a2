"""GPU time: readings joined by the trapezoid rule over the time that really passed, per GPU;
gaps bridged up to a bound, never guessed beyond it."""

from __future__ import annotations

import pytest

from dlcourse_exporter.sources.gpu_idle import IdleClocks
from dlcourse_exporter.sources.gpu_time import GpuReading, GpuTimeMeter, per_user


def reading(at: float, uuid: str = "GPU-a", index: int = 0, **users) -> GpuReading:
    return GpuReading(index, uuid, at, users)


def totals(meter: GpuTimeMeter) -> dict[tuple[str, str], tuple[float, float]]:
    return {(t.user, t.gpu_uuid): (t.busy_seconds, t.memory_byte_seconds) for t in meter.totals()}


def test_steady_use_over_uneven_cycles_is_exact():
    meter = GpuTimeMeter(max_gap=20)
    for at in (0.0, 5.0, 5.5, 14.0, 19.0):  # late, short and slow cycles
        meter.add([reading(at, ada=(0.5, 1000))])
    assert totals(meter) == {("ada", "GPU-a"): (pytest.approx(9.5), pytest.approx(19000))}


def test_a_step_counts_half_of_the_gap_it_happened_in():
    meter = GpuTimeMeter(max_gap=20)
    meter.add([reading(0, ada=(0.0, 0))])
    meter.add([reading(4, ada=(1.0, 100))])
    meter.add([reading(8, ada=(1.0, 100))])
    assert totals(meter)[("ada", "GPU-a")] == (pytest.approx(2 + 4), pytest.approx(200 + 400))


def test_students_sharing_a_gpu_each_get_their_own_share():
    meter = GpuTimeMeter(max_gap=20)
    meter.add([reading(0, ada=(0.6, 2), bob=(0.3, 1))])
    meter.add([reading(10, ada=(0.6, 2), bob=(0.3, 1))])
    assert totals(meter) == {
        ("ada", "GPU-a"): (pytest.approx(6), pytest.approx(20)),
        ("bob", "GPU-a"): (pytest.approx(3), pytest.approx(10)),
    }


def test_a_gpu_not_read_in_a_cycle_is_bridged_by_its_next_reading_within_the_bound():
    meter = GpuTimeMeter(max_gap=12)
    meter.add([reading(0, ada=(1.0, 1)), reading(0, "GPU-b", 1, ada=(1.0, 1))])
    meter.add([reading(5, ada=(1.0, 1))])  # GPU-b's process list failed this cycle
    meter.add([reading(10, ada=(1.0, 1)), reading(10, "GPU-b", 1, ada=(1.0, 1))])
    assert totals(meter) == {("ada", "GPU-a"): (10, 10), ("ada", "GPU-b"): (10, 10)}


def test_a_gap_longer_than_the_bound_is_unknown_time_counted_as_nothing():
    meter = GpuTimeMeter(max_gap=12)
    meter.add([reading(0, ada=(1.0, 1))])
    meter.add([reading(30, ada=(1.0, 1))])  # NVML was down for half a minute
    meter.add([reading(35, ada=(1.0, 1))])
    assert totals(meter) == {("ada", "GPU-a"): (5, 5)}
    meter.add([reading(35, ada=(1.0, 1))])  # no time passed: nothing
    meter.add([reading(34, ada=(1.0, 1))])  # a clock that went back: nothing
    assert totals(meter) == {("ada", "GPU-a"): (5, 5)}


def test_a_user_is_counted_from_their_first_reading_and_forgotten_on_request():
    meter = GpuTimeMeter(max_gap=20)
    meter.add([reading(0, ada=(1.0, 1))])
    assert totals(meter) == {("ada", "GPU-a"): (0, 0)}  # the series exists from the start
    meter.add([reading(2, ada=(1.0, 1), bob=(1.0, 1))])
    meter.forget(lambda user: user != "ada")
    assert set(totals(meter)) == {("bob", "GPU-a")}


def test_per_user_sums_memory_and_caps_utilization_at_one():
    assert per_user([("ada", 0.7, 1), ("ada", 0.6, 2), ("bob", 0.1, 0)]) == {
        "ada": (1.0, 3),
        "bob": (0.1, 0),
    }


def test_idle_since_the_first_idle_reading_reset_by_activity_or_no_memory():
    clocks: IdleClocks[str] = IdleClocks()
    assert clocks.update({"k": (0.0, 100), "busy": (0.2, 100), "empty": (0.0, 0)}, 10) == {
        "k": 10,
        "busy": None,
        "empty": None,
    }
    assert clocks.update({"k": (0.0, 100)}, 15) == {"k": 10}  # still idle since 10
    assert clocks.update({"k": (0.01, 100)}, 20) == {"k": None}  # any activity resets
    assert clocks.update({"k": (0.0, 100)}, 25) == {"k": 25}
    assert clocks.update({}, 30) == {}  # not read: forgotten
    assert clocks.update({"k": (0.0, 100)}, 35) == {"k": 35}
