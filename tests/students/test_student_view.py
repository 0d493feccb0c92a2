"""What a student's page says, from the exporter's answer for them (pure: no process)."""

from __future__ import annotations

import pytest

from dlcourse_installer.hub.gpu_idle import GIB, IdleSettings
from dlcourse_status.deaths import ADVICE, explain
from dlcourse_status.student_view import WrongStudent, student_view

CULL = IdleSettings(cull=True, min_bytes=GIB, warn_seconds=600, grace_seconds=300)
NOW = 10_000.0


def facts(**extra):
    return {"user": "ada", "generated_at": NOW - 1, **extra}


def test_an_answer_for_someone_else_is_refused():
    with pytest.raises(WrongStudent):
        student_view("ada", {"user": "grace", "kernels": []}, CULL, NOW)


def test_unknown_to_the_exporter_is_an_empty_page():
    view = student_view("ada", None, CULL, NOW)
    assert view["user"] == "ada" and view["kernels"] == [] and view["deaths"] == []


def test_a_warned_kernel_carries_its_deadline_only_when_the_culler_is_on():
    kernel = {"kernel_id": "k1", "gpu_memory_bytes": 2 * GIB, "gpu_idle_since": NOW - 700,
              "gpu_utilization_ratio": 0.0, "gpus": ["GPU-a"], "started": NOW - 900}  # fmt: skip
    on = student_view("ada", facts(kernels=[kernel]), CULL, NOW)["kernels"][0]["idle"]
    assert on["warned"] and on["seconds_left"] == 200 and on["shutdown_at"] == NOW + 200
    off = IdleSettings(cull=False, warn_seconds=600, grace_seconds=300)
    idle = student_view("ada", facts(kernels=[kernel]), off, NOW)["kernels"][0]["idle"]
    assert idle["warned"] and idle["seconds_left"] is None and idle["shutdown_at"] is None


def test_only_the_named_fields_pass_and_bad_values_are_tamed():
    kernel = {"kernel_id": "k1", "gpu_memory_bytes": "lots", "gpu_idle_since": None,
              "secret": "x", "gpus": "GPU-a"}  # fmt: skip
    view = student_view("ada", facts(kernels=[kernel, "junk"], other_users=["grace"]), CULL, NOW)
    assert "other_users" not in view
    assert view["kernels"] == [
        {"kernel_id": "k1", "notebook": "", "started": None, "gpu_memory_bytes": 0,
         "gpu_utilization_ratio": 0.0, "gpu_idle_since": None, "gpus": [],
         "idle": {"phase": "active", "warned": False, "warn_at": None, "shutdown_at": None,
                  "seconds_left": None}},
    ]  # fmt: skip


def test_deaths_newest_first_in_plain_words():
    deaths = [
        {"kernel_id": "k1", "at": NOW - 50, "reason": "oom_killer", "detail": "limit 4 GiB"},
        {"kernel_id": "k2", "at": NOW - 5, "reason": "cuda_oom", "detail": ""},
    ]
    view = student_view("ada", facts(deaths=deaths), CULL, NOW)
    assert [d["kernel_id"] for d in view["deaths"]] == ["k2", "k1"]
    assert view["deaths"][1]["what"] == (
        "Killed by the out-of-memory killer: your server ran out of memory (limit 4 GiB)."
    )
    assert "batch" in view["deaths"][0]["advice"]


@pytest.mark.parametrize("reason", [*ADVICE, "something-new"])
def test_every_reason_has_one_sentence_and_one_line_to_try(reason):
    explained = explain(reason, "SIGSEGV\nwith\ta newline " + "x" * 500)
    assert "\n" not in explained.what and "\n" not in explained.advice
    assert len(explained.what) < 300 and explained.advice
