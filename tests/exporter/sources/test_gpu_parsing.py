from types import SimpleNamespace

import pytest

from dlcourse_exporter.sources.nvml_gpus import (
    CLOCKS_EVENT_REASONS,
    decode_clocks_event_reasons,
    format_cuda_version,
)
from dlcourse_exporter.sources.nvml_processes import latest_sm_utilization


@pytest.mark.parametrize(("raw", "text"), [(12040, "12.4"), (11080, "11.8"), (13000, "13.0")])
def test_format_cuda_version(raw, text):
    assert format_cuda_version(raw) == text


def test_decode_clocks_event_reasons_emits_every_reason():
    decoded = decode_clocks_event_reasons(0x4 | 0x40)
    assert set(decoded) == set(CLOCKS_EVENT_REASONS)
    assert [r for r, active in decoded.items() if active] == ["power_cap", "hw_thermal"]
    assert not any(decode_clocks_event_reasons(0).values())


def sample(pid, ts, sm):
    return SimpleNamespace(pid=pid, timeStamp=ts, smUtil=sm)


def test_latest_sm_utilization_keeps_the_newest_sample_per_pid():
    by_pid, last = latest_sm_utilization([sample(1, 10, 50), sample(1, 20, 30), sample(2, 15, 120)])
    assert by_pid == {1: 0.3, 2: 1.0}  # a sample above 100 % is clamped
    assert last == 20
    assert latest_sm_utilization([]) == ({}, 0)
