"""The students' services refuse bad settings in one line and exit 2 (systemd and the hub
then stop instead of restarting them in a loop)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dlcourse_culler.service import Settings


def run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.live
def test_the_culler_without_its_settings_is_one_line_and_exit_2(tmp_path):
    result = run("dlcourse_culler", {"DLCOURSE_CULLER_TOKEN_FILE": str(tmp_path / "absent")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    for missing in ("JUPYTERHUB_API_TOKEN", "DLCOURSE_HUB_PUBLIC_URL", "absent"):
        assert missing in result.stderr


@pytest.mark.live
def test_the_students_page_without_its_settings_is_one_line_and_exit_2():
    result = run("dlcourse_status.student", {"DLCOURSE_PROMETHEUS_URL": "ftp://x"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_the_culler_looks_often_enough_for_its_thresholds(tmp_path):
    token = tmp_path / "token"
    token.write_text("t\n")
    config = tmp_path / "config.yaml"
    base = {
        "JUPYTERHUB_API_TOKEN": "x",
        "DLCOURSE_HUB_PUBLIC_URL": "http://127.0.0.1:80",
        "DLCOURSE_CULLER_TOKEN_FILE": str(token),
        "DLCOURSE_TLJH_CONFIG": str(config),
    }
    settings, warnings = Settings.from_environment(base)
    assert warnings == [] and settings.every_seconds == 30  # 20 and 10 min: every 30 s
    config.write_text('{"dlcourse": {"gpu_idle_warn": 0.1, "gpu_idle_grace": 0.5}}')
    assert Settings.from_environment(base)[0].every_seconds == 1  # 6 s: as often as it may
    config.write_text('{"dlcourse": {"gpu_idle_warn": "soon"}}')
    assert len(Settings.from_environment(base)[1]) == 1
