"""The chart's PrometheusRule: the shipped rules, job names as parameters, real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from helm_chart import SINGLE_SERVER_JOBS, only

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = [
    REPO / "prometheus" / "rules" / "dlcourse-recording.yml",
    REPO / "prometheus" / "rules" / "dlcourse-alerts.yml",
]
SINGLE_SERVER_RULE_TESTS = sorted((REPO / "tests" / "prometheus" / "rules").glob("*_test.yml"))
KUBERNETES_RULE_TEST = Path(__file__).parent / "rules" / "kubernetes_jobs_test.yml"


def shipped_groups() -> list[dict]:
    return [group for path in SHIPPED_RULES for group in yaml.safe_load(path.read_text())["groups"]]


def expressions(objects: list[dict]) -> str:
    """Every rule expression of the rendered PrometheusRule, one after the other."""
    groups = only(objects, "PrometheusRule")["spec"]["groups"]
    return "\n".join(rule["expr"] for group in groups for rule in group["rules"])


def write_rules(objects: list[dict], directory: Path) -> Path:
    """The PrometheusRule's groups as a plain Prometheus rule file."""
    path = directory / "rendered-rules.yml"
    path.write_text(yaml.safe_dump({"groups": only(objects, "PrometheusRule")["spec"]["groups"]}))
    return path


def promtool_test(promtool: str, test_file: Path, rules: Path, tmp_path: Path):
    """Run a promtool unit test file against `rules` instead of the files it names."""
    test = yaml.safe_load(test_file.read_text())
    test["rule_files"] = [str(rules)]
    copy = tmp_path / test_file.name
    copy.write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", str(copy)], capture_output=True, text=True)


def test_with_default_job_names_the_rules_are_the_shipped_files(helm):
    rule = only(helm.template(*SINGLE_SERVER_JOBS), "PrometheusRule")
    assert rule["spec"]["groups"] == shipped_groups()


def test_the_chart_default_selects_kube_prometheus_stacks_node_exporter(default_objects):
    rules = expressions(default_objects)
    assert 'job="node-exporter"' in rules and 'job="node"' not in rules
    assert 'up{job="dlcourse"}' in rules and 'up{job="jupyterhub"}' in rules


def test_other_job_names_reach_every_selector(helm):
    jobs = {"exporter": "gpu-exporter", "jupyterhub": "hub", "node": "nodes"}
    objects = helm.template(
        *(arg for role, job in jobs.items() for arg in ("--set", f"jobs.{role}={job}"))
    )
    rules = expressions(objects)
    for old in ('job="dlcourse"', 'job="jupyterhub"', 'job="node-exporter"', "${job."):
        assert old not in rules
    assert rules.count('job="gpu-exporter"') == 2 and rules.count('job="hub"') == 1
    assert rules.count('job="nodes"') == 9


@pytest.mark.parametrize("values", ["default", "single-server jobs"])
def test_rendered_rules_pass_promtool_lint(helm, promtool, tmp_path, values):
    objects = helm.template(*(SINGLE_SERVER_JOBS if values != "default" else ()))
    rules = write_rules(objects, tmp_path)
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", str(rules)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rule_count = sum(len(group["rules"]) for group in shipped_groups())
    assert f"SUCCESS: {rule_count} rules found" in result.stdout


@pytest.mark.parametrize("test_file", SINGLE_SERVER_RULE_TESTS, ids=lambda p: p.name)
def test_rendered_rules_pass_the_rule_unit_tests(helm, promtool, tmp_path, test_file):
    """The single-server unit tests (job names as in prometheus.yml) pass on the chart's rules."""
    rules = write_rules(helm.template(*SINGLE_SERVER_JOBS), tmp_path)
    result = promtool_test(promtool, test_file, rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_default_rules_pass_the_kubernetes_unit_tests(default_objects, promtool, tmp_path):
    rules = write_rules(default_objects, tmp_path)
    result = promtool_test(promtool, KUBERNETES_RULE_TEST, rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_unit_tests_fail_on_the_single_server_rules(promtool, tmp_path):
    """They can fail: on the rules as shipped (job "node") the node-exporter alerts stay silent."""
    rules = tmp_path / "rendered-rules.yml"
    rules.write_text(yaml.safe_dump({"groups": shipped_groups()}))
    result = promtool_test(promtool, KUBERNETES_RULE_TEST, rules, tmp_path)
    assert result.returncode != 0
    assert "DLCourseNodeExporterDown" in result.stdout + result.stderr
