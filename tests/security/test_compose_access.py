"""docker-compose.yml has the protections of the installed server (Docker cannot run here).

Statically: every daemon asks for a credential, from a secret file; the retention is the
installer's; Grafana's sign-in settings are the installer's. For real: the Alertmanager
health check (amtool with its HTTP config file) against a real Alertmanager behind basic auth,
and the `webauth` command that makes secrets/web-config.yml.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dlcourse_installer.inputs.options import Options
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.rendered import grafana_config, templates, webauth
from dlcourse_testing.alerting import find_tool

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_daemon_asks_for_a_credential():
    assert SERVICES["exporter"]["environment"]["DLCOURSE_WEB_TOKEN_FILE"].startswith(
        "/run/secrets/"
    )
    for name, web_config in (
        ("prometheus", "/etc/prometheus/web-config.yml"),
        ("alertmanager", "/etc/alertmanager/web-config.yml"),
        ("node-exporter", "/etc/node-exporter/web-config.yml"),
    ):
        service = SERVICES[name]
        assert f"--web.config.file={web_config}" in service["command"], name
        targets = {s["target"] for s in service["secrets"] if isinstance(s, dict)}
        assert web_config in targets, f"{name}: the web config is a secret file"
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    mounted = {s["target"] for s in SERVICES["prometheus"]["secrets"] if isinstance(s, dict)}
    for client in [*prometheus["scrape_configs"], *prometheus["alerting"]["alertmanagers"]]:
        files = [
            client.get("authorization", {}).get("credentials_file"),
            client.get("basic_auth", {}).get("password_file"),
        ]
        assert [f for f in files if f], f"{client.get('job_name', 'alerting')} has no credential"
        assert {f for f in files if f} <= mounted


def test_the_retention_is_the_installers():
    assert (
        f"--storage.tsdb.retention.time={templates.RETENTION}" in SERVICES["prometheus"]["command"]
    )


def test_grafana_signs_in_as_the_installed_grafana_does():
    ours = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ours.read(REPO / "grafana" / "grafana.ini")
    installed = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    installed.read_string(
        grafana_config.grafana_ini(
            Paths(), Ports(), public_url="https://course.example.edu", grafana_port=None,
            staff_group=Options().staff_group,
        )
    )  # fmt: skip
    # Everything but what names this server's addresses and files (an installed hub is on
    # dlcourse's port, installer/layout/ports.py; a compose host's TLJH keeps its own).
    local = {"root_url", "domain", "client_secret", "auth_url", "signout_redirect_url",
             "cookie_secure", "default_home_dashboard_path", "token_url", "api_url"}  # fmt: skip
    for section in ("auth", "auth.basic", "auth.anonymous", "auth.generic_oauth", "users"):
        keys = (set(ours[section]) | set(installed[section])) - local
        for key in keys:
            assert ours[section].get(key) == installed[section].get(key), f"[{section}] {key}"
    assert ours["auth.generic_oauth"]["auth_url"].startswith("$__env{DLCOURSE_HUB_URL}/hub/")
    for key, path in (("token_url", "/hub/api/oauth2/token"), ("api_url", "/hub/api/user")):
        assert ours["auth.generic_oauth"][key].endswith(path)
        assert installed["auth.generic_oauth"][key].endswith(path)
    assert SERVICES["grafana"]["environment"]["DLCOURSE_HUB_URL"].startswith("${DLCOURSE_HUB_URL:?")


def test_the_alertmanager_health_check_works_with_its_credential(alerting_stack, tmp_path):
    """The compose health check's amtool call, with the secret's path moved here."""
    stack = alerting_stack(targets={})
    password = tmp_path / "prometheus_password"
    password.write_text(stack.auth[1] + "\n")
    http_config = tmp_path / "healthcheck-http.yml"
    http_config.write_text(
        (REPO / "prometheus" / "healthcheck-http.yml")
        .read_text()
        .replace("/run/secrets/prometheus_password", str(password))
    )
    test = SERVICES["alertmanager"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "amtool"]
    argv = [find_tool("amtool"), *test[2:]]
    argv = [
        a.replace("127.0.0.1:9093", stack.alertmanager_url.removeprefix("http://")) for a in argv
    ]
    argv = [a.replace("/etc/alertmanager/healthcheck-http.yml", str(http_config)) for a in argv]
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    password.write_text("wrong\n")  # the check does fail without the right credential
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode != 0


@pytest.mark.live
def test_the_web_config_command(tmp_path):
    (tmp_path / "a").write_text("first-password\n")
    (tmp_path / "b").write_text("second-password\n")
    result = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer.rendered.webauth",
         f"prometheus={tmp_path / 'a'}", f"grafana={tmp_path / 'b'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    users = webauth.parse_web_config(result.stdout)
    assert webauth.hash_matches("first-password", users["prometheus"])
    assert webauth.hash_matches("second-password", users["grafana"])
    assert "first-password" not in result.stdout and "second-password" not in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer.rendered.webauth", f"x={tmp_path / 'missing'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
