"""The shipped configuration passes the real tools: promtool and amtool."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from dlcourse_testing.alerting import PROMETHEUS_DIR, SYSTEM_PYTHON

RULE_TESTS = sorted((Path(__file__).parent / "rules").glob("*_test.yml"))
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
AM_CONFIG = PROMETHEUS_DIR / "alertmanager.yml"
FULL_SETTINGS = {
    "email_to": "teacher@example.org",
    "email_from": "alertmanager@example.org",
    "smtp_smarthost": "smtp.example.org:587",
    "smtp_auth_username": "alertmanager",
    "smtp_auth_password_file": "/etc/prometheus/secrets/smtp-password",
    "webhook_url": "https://chat.example.org/hooks/dlcourse",
    "webhook_credentials_file": "/etc/prometheus/secrets/webhook-token",
    "watchdog_url": "https://deadman.example.org/ping/dlcourse",
}


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DLCOURSE_AM_")}


def test_prometheus_config_syntax(promtool):
    result = run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS_DIR / "prometheus.yml")]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_with_its_files(promtool, tmp_path):
    """The full check (rule files included) needs every credential file to exist."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    token = tmp_path / "credential"
    token.write_text("not-a-real-token\n")
    for client in [*config["scrape_configs"], *config["alerting"]["alertmanagers"]]:
        for auth, key in (("authorization", "credentials_file"), ("basic_auth", "password_file")):
            if auth in client:
                client[auth][key] = str(token)
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", "--lint=all", "--lint-fatal", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_rules_lint_clean(promtool):
    result = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests(promtool, test_file):
    result = run([promtool, "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.live
def test_generated_rules_are_up_to_date():
    result = run([SYSTEM_PYTHON, str(PROMETHEUS_DIR / "render.py"), "rules", "--check"])
    assert result.returncode == 0, result.stderr


@pytest.mark.live
def test_generated_alertmanager_config_is_up_to_date():
    result = run(
        [
            SYSTEM_PYTHON,
            str(PROMETHEUS_DIR / "render.py"),
            "alertmanager",
            "--check",
            "--ignore-env",
        ]
    )
    assert result.returncode == 0, result.stderr


def test_alertmanager_config_valid(amtool):
    result = run([amtool, "check-config", str(AM_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_with_every_receiver_setting(amtool, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(FULL_SETTINGS))
    out = tmp_path / "alertmanager.yml"
    render = [SYSTEM_PYTHON, str(PROMETHEUS_DIR / "render.py"), "alertmanager"]
    result = run([*render, "--settings", str(settings), "--out", str(out)], env=clean_env())
    assert result.returncode == 0, result.stderr
    result = run([amtool, "check-config", str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(out.read_text())
    [notify] = [r for r in config["receivers"] if r["name"] == "notify"]
    assert notify["email_configs"][0]["to"] == "teacher@example.org"
    assert notify["webhook_configs"][0]["http_config"]["authorization"] == {
        "credentials_file": "/etc/prometheus/secrets/webhook-token"
    }
    assert config["global"]["smtp_auth_password_file"] == "/etc/prometheus/secrets/smtp-password"
    # Secrets are only ever referenced by path.
    assert "password:" not in out.read_text().replace("password_file:", "")


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=DLCourseExporterDown", "severity=critical"], "notify"),
        (["alertname=DLCourseGPUsSaturated", "severity=warning"], "notify"),
        (["alertname=DLCourseKernelCrashed", "severity=info"], "null"),
        (["alertname=DLCourseWatchdog", "severity=info"], "watchdog"),
    ],
    ids=["critical", "warning", "info", "watchdog"],
)
def test_alertmanager_routes(amtool, labels, receiver):
    result = run(
        [amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}"]
        + [f"--verify.receivers={receiver}", *labels]
    )
    assert result.returncode == 0, result.stdout + result.stderr
