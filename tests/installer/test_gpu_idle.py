"""The idle thresholds from TLJH's config.yaml, and the warn/shut-down decision."""

from __future__ import annotations

import pytest

from dlcourse_installer.hub.gpu_idle import (
    GIB,
    IdleSettings,
    culler_may_shut_down,
    judge,
    settings_from_tljh,
)

SHORT = IdleSettings(cull=True, min_bytes=GIB, warn_seconds=60, grace_seconds=30)


def test_nothing_set_means_off_with_the_issue_s_defaults():
    settings, errors = settings_from_tljh({})
    assert errors == []
    assert settings == IdleSettings(False, GIB, 20 * 60, 10 * 60)


def test_values_as_tljh_config_stores_them():
    # tljh-config set dlcourse.gpu_idle_warn 0.5 stores a float, 20 an int, true a bool.
    config = {"dlcourse": {"gpu_idle_cull": True, "gpu_idle_min_bytes": 2 * GIB,
                           "gpu_idle_warn": 0.5, "gpu_idle_grace": 2}}  # fmt: skip
    settings, errors = settings_from_tljh(config)
    assert errors == []
    assert settings == IdleSettings(True, 2 * GIB, 30, 120)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gpu_idle_cull", "yes"),
        ("gpu_idle_min_bytes", "1G"),
        ("gpu_idle_min_bytes", 0),
        ("gpu_idle_min_bytes", True),
        ("gpu_idle_warn", -1),
        ("gpu_idle_warn", "20m"),
        ("gpu_idle_grace", float("nan")),
        ("gpu_idle_grace", False),
    ],
)
def test_a_bad_value_is_one_line_and_keeps_its_default(key, value):
    settings, errors = settings_from_tljh({"dlcourse": {key: value}})
    assert len(errors) == 1 and f"dlcourse.{key}" in errors[0] and "\n" not in errors[0]
    assert settings == IdleSettings()


def test_a_section_that_is_not_a_mapping_is_refused():
    settings, errors = settings_from_tljh({"dlcourse": "on"})
    assert settings == IdleSettings() and len(errors) == 1


def test_a_kernel_that_used_the_gpu_or_holds_little_is_active():
    assert judge(8 * GIB, None, 1000.0, SHORT).phase == "active"
    assert judge(GIB - 1, 0.0, 1000.0, SHORT).phase == "active"


def test_idle_then_warned_then_due_with_the_time_left():
    since = 1000.0
    idle = judge(GIB, since, since + 59, SHORT)
    assert idle.phase == "idle" and not idle.warned
    assert (idle.warn_at, idle.due_at, idle.seconds_left) == (1060, 1090, 31)
    warned = judge(GIB, since, since + 60, SHORT)
    assert warned.phase == "warned" and warned.warned and warned.seconds_left == 30
    due = judge(GIB, since, since + 95, SHORT)
    assert due.phase == "due" and due.seconds_left == 0


def test_the_culler_waits_a_whole_grace_after_it_first_saw_the_warning():
    due = judge(GIB, 0.0, 10_000.0, SHORT)  # idle for hours when the culler starts
    assert not culler_may_shut_down(due, first_seen_warned=10_000.0, now=10_000.0,
                                    settings=SHORT)  # fmt: skip
    assert not culler_may_shut_down(due, 10_000.0, 10_029.0, SHORT)
    assert culler_may_shut_down(due, 10_000.0, 10_030.0, SHORT)
    warned = judge(GIB, 0.0, 70.0, SHORT)
    assert not culler_may_shut_down(warned, 0.0, 70.0, SHORT)
