"""prometheus/render.py: overrides change the rules, bad input is refused in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from dlcourse_testing.alerting import PROMETHEUS_DIR, SYSTEM_PYTHON

pytestmark = pytest.mark.live  # every test here starts a process

RENDER = [SYSTEM_PYTHON, str(PROMETHEUS_DIR / "render.py")]


def render(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RENDER, *args], capture_output=True, text=True, env=env or {})


def rules_by_name(path: Path) -> dict[tuple[str, str], dict]:
    doc = yaml.safe_load(path.read_text())
    return {(r["alert"], r["labels"]["severity"]): r for g in doc["groups"] for r in g["rules"]}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_overrides_change_thresholds_and_durations(tmp_path):
    overrides = write_json(
        tmp_path / "o.json",
        {
            "runbook_base_url": "http://course.example.org/runbooks.html",
            "alerts": {
                "DLCourseGPUsSaturated": {"utilization": 0.8, "for": "45m"},
                "DLCourseGPUTemperatureHigh": {"critical_celsius": 95},
            },
        },
    )
    out = tmp_path / "alerts.yml"
    result = render("rules", "--overrides", str(overrides), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rules = rules_by_name(out)
    saturated = rules[("DLCourseGPUsSaturated", "warning")]
    assert saturated["expr"] == "instance:dlcourse_gpu_utilization_ratio:min > 0.8"
    assert saturated["for"] == "45m"
    assert "above 80%" in saturated["annotations"]["description"]
    assert saturated["annotations"]["runbook_url"] == (
        "http://course.example.org/runbooks.html#dlcoursegpussaturated"
    )
    assert rules[("DLCourseGPUTemperatureHigh", "critical")]["expr"].endswith("> 95")
    # Untouched values keep their defaults.
    assert rules[("DLCourseGPUTemperatureHigh", "warning")]["expr"].endswith("> 85")
    unresolved = [line for line in out.read_text().splitlines() if "${" in line.split("#")[0]]
    assert not unresolved


def test_overrides_change_the_job_names_the_rules_select(tmp_path):
    overrides = write_json(tmp_path / "o.json", {"jobs": {"node": "node-exporter"}})
    out = tmp_path / "alerts.yml"
    assert render("rules", "--overrides", str(overrides), "--out", str(out)).returncode == 0
    rules = rules_by_name(out)
    assert rules[("DLCourseNodeExporterDown", "warning")]["expr"] == 'up{job="node-exporter"} == 0'
    memory = rules[("DLCourseHostMemoryPressure", "warning")]["expr"]
    assert memory.count('{job="node-exporter"}') == 2
    # The other roles keep prometheus.yml's job names.
    assert rules[("DLCourseExporterDown", "critical")]["expr"] == 'up{job="dlcourse"} == 0'
    assert 'job="node"' not in out.read_text()


def test_bad_overrides_are_all_reported_in_one_line_and_nothing_is_written(tmp_path):
    overrides = write_json(
        tmp_path / "o.json",
        {
            "alerts": {
                "DLCourseNoSuchAlert": {"for": "5m"},
                "DLCourseGPUsSaturated": {"utilization": "high", "for": "20 minutes"},
                "DLCourseGPULost": {"threshold": 1},
                "DLCourseGPUSlowdown": {"reasons": 'hw_thermal"} or vector(1) #'},
            },
            "jobs": {"exporter": 'dlcourse"} or vector(1) #', "kubelet": "kubelet"},
            "colour": "blue",
        },
    )
    out = tmp_path / "alerts.yml"
    result = render("rules", "--overrides", str(overrides), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("render: ")
    for fragment in [
        "unknown alert 'DLCourseNoSuchAlert'",
        "DLCourseGPUsSaturated.utilization: expected a non-negative number",
        "DLCourseGPUsSaturated.for: expected a Prometheus duration",
        "DLCourseGPULost.threshold: unknown setting",
        "DLCourseGPUSlowdown.reasons: expected a string without quotes",
        "unknown key 'colour'",
        "jobs.exporter: expected letters, digits and _.:- only",
        "jobs.kubelet: unknown role",
    ]:
        assert fragment in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object")],
)
def test_unreadable_overrides(tmp_path, content, message):
    path = tmp_path / "o.json"
    path.write_text(content)
    result = render("rules", "--overrides", str(path), "--out", str(tmp_path / "x.yml"))
    assert result.returncode == 2 and message in result.stderr


def test_missing_overrides_file(tmp_path):
    result = render(
        "rules", "--overrides", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x")
    )
    assert result.returncode == 2 and "cannot read overrides" in result.stderr


def test_check_reports_stale_output_and_leaves_it_alone(tmp_path):
    out = tmp_path / "alerts.yml"
    out.write_text("groups: []\n")
    result = render("rules", "--out", str(out), "--check")
    assert result.returncode == 1 and "stale" in result.stderr
    assert out.read_text() == "groups: []\n"
    assert render("rules", "--out", str(out)).returncode == 0
    assert render("rules", "--out", str(out), "--check").returncode == 0


def test_alertmanager_settings_from_file_then_environment(tmp_path):
    settings = write_json(
        tmp_path / "s.json",
        {"email_to": "file@example.org", "smtp_smarthost": "smtp.example.org:25"},
    )
    out = tmp_path / "am.yml"
    env = {"DLCOURSE_AM_EMAIL_TO": "env@example.org", "DLCOURSE_AM_GROUP_WAIT": "10s"}
    result = render("alertmanager", "--settings", str(settings), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    [notify] = [r for r in config["receivers"] if r["name"] == "notify"]
    assert notify["email_configs"][0]["to"] == "env@example.org"
    assert "webhook_configs" not in notify  # no webhook_url: no webhook
    assert config["route"]["group_wait"] == "10s"
    assert config["global"]["smtp_smarthost"] == "smtp.example.org:25"


def test_bad_alertmanager_settings(tmp_path):
    settings = write_json(tmp_path / "s.json", {"smtp_password": "hunter2"})
    env = {
        "DLCOURSE_AM_EMAIL_TO": "not-an-address",
        "DLCOURSE_AM_WEBHOOK_URL": "ftp://x",
        "DLCOURSE_AM_SMTP_AUTH_PASSWORD_FILE": "relative/path",
        "DLCOURSE_AM_GROUP_WAIT": "soon",
    }
    out = tmp_path / "am.yml"
    result = render("alertmanager", "--settings", str(settings), "--out", str(out), env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    for fragment in [
        "unknown setting 'smtp_password'",
        "email_to: expected an e-mail address",
        "webhook_url: expected an http(s) URL",
        "smtp_auth_password_file: expected an absolute path",
        "group_wait: expected a Prometheus duration",
        "smtp_smarthost is empty",
    ]:
        assert fragment in result.stderr
    # Values that may hold a secret (a webhook URL, a mistaken password) are never echoed.
    assert "hunter2" not in result.stderr and "ftp://x" not in result.stderr
    assert not out.exists()
