"""Conventions every alert must keep, so a new alert cannot escape review or tests.

- Names: CamelCase with the DLCourse prefix; severity critical, warning or info only.
- Annotations: a static summary, a description templated with labels and value, and a
  runbook_url pointing at an existing section of docs/runbooks.md.
- Tests (tests/prometheus/rules/*_test.yml): for every alert rule, a group named
  "<Alert>: fires ..." where it fires with full labels and all annotations and, one
  evaluation earlier, does not (just before `for` elapses); and a group named
  "<Alert>: look-alike ..." where, after its `for` has elapsed, it does not fire.
- Recording rules: named level:metric:operation, documented and unit-tested.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dlcourse_testing.alerting import PROMETHEUS_DIR, REPO

ALERTS_FILE = PROMETHEUS_DIR / "rules" / "dlcourse-alerts.yml"
RECORDING_FILE = PROMETHEUS_DIR / "rules" / "dlcourse-recording.yml"
TEST_FILES = sorted((Path(__file__).parent / "rules").glob("*_test.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
RECORDING_DOC = REPO / "docs" / "recording-rules.md"
# The Watchdog fires from the first evaluation, always: it has no "before" and no look-alike.
ALWAYS_FIRING = {"DLCourseWatchdog"}
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str | None) -> float:
    if not duration:
        return 0
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration))


def load_rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


ALERT_RULES = [rule for rule in load_rules(ALERTS_FILE) if "alert" in rule]
RECORDING_RULES = [rule for rule in load_rules(RECORDING_FILE) if "record" in rule]


def rule_id(rule: dict) -> str:
    return f"{rule['alert']}/{rule['labels']['severity']}"


def load_test_groups() -> list[dict]:
    groups = []
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        interval = seconds(doc.get("evaluation_interval", "1m"))
        for group in doc["tests"]:
            groups.append({**group, "_eval_interval": interval, "_file": path.name})
    return groups


TEST_GROUPS = load_test_groups()


def cases(group: dict, alertname: str) -> list[tuple[float, list[dict]]]:
    return [
        (seconds(case["eval_time"]), case.get("exp_alerts") or [])
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == alertname
    ]


def with_severity(alerts: list[dict], severity: str) -> list[dict]:
    return [a for a in alerts if a.get("exp_labels", {}).get("severity") == severity]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_there_are_alerts_and_tests():
    assert len(ALERT_RULES) >= 25 and TEST_FILES


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_alert_name_severity_and_annotations(rule):
    assert re.fullmatch(r"DLCourse([A-Z][a-z0-9]*|[A-Z]+(?=[A-Z]|$))+", rule["alert"]), rule[
        "alert"
    ]
    assert set(rule["labels"]) == {"severity"}
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"], "summary must be static"
    assert annotations["summary"].endswith(".")
    assert "$value" in annotations["description"]
    # The Watchdog's only label is its severity: nothing to name.
    assert "$labels" in annotations["description"] or rule["alert"] in ALWAYS_FIRING
    assert annotations["runbook_url"].endswith("#" + rule["alert"].lower())


def test_every_alert_has_a_runbook_section():
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    missing = {r["alert"] for r in ALERT_RULES if r["alert"].lower() not in anchors}
    assert not missing, f"docs/runbooks.md lacks sections for {sorted(missing)}"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=rule_id)
def test_alert_fires_and_not_just_before(rule):
    name, severity = rule["alert"], rule["labels"]["severity"]
    groups = [g for g in TEST_GROUPS if g["name"].startswith(f"{name}: fires")]
    for group in groups:
        by_time = dict(cases(group, name))
        for t, alerts in by_time.items():
            fired = with_severity(alerts, severity)
            complete = [
                a
                for a in fired
                if set(a.get("exp_annotations", {})) == {"summary", "description", "runbook_url"}
            ]
            if not complete:
                continue
            before = t - group["_eval_interval"]
            if name in ALWAYS_FIRING:
                return
            if before in by_time and not with_severity(by_time[before], severity):
                return
    pytest.fail(
        f"{name} ({severity}): no '{name}: fires ...' test group where it fires with all three "
        "annotations and does not fire one evaluation earlier"
    )


@pytest.mark.parametrize(
    "rule", [r for r in ALERT_RULES if r["alert"] not in ALWAYS_FIRING], ids=rule_id
)
def test_alert_has_a_look_alike_that_does_not_fire(rule):
    name, severity = rule["alert"], rule["labels"]["severity"]
    for group in TEST_GROUPS:
        if not group["name"].startswith(f"{name}: look-alike"):
            continue
        quiet = [t for t, alerts in cases(group, name) if not with_severity(alerts, severity)]
        if quiet and max(quiet) >= seconds(rule.get("for")):
            return
    pytest.fail(f"{name} ({severity}): no '{name}: look-alike ...' group where it stays quiet")


@pytest.mark.parametrize("rule", RECORDING_RULES, ids=lambda r: r["record"])
def test_recording_rule_named_documented_and_tested(rule):
    name = rule["record"]
    assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), "level:metric:operation"
    assert f"`{name}`" in RECORDING_DOC.read_text(), f"{name} is not in docs/recording-rules.md"
    tested = [
        case
        for group in TEST_GROUPS
        for case in group.get("promql_expr_test", [])
        if case["expr"] == name and case.get("exp_samples")
    ]
    assert tested, f"{name} has no promql_expr_test"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_rule_tests_evaluate_recording_rules_first(path):
    """Without group_eval_order promtool picks a random group order: flaky `for` timings."""
    doc = yaml.safe_load(path.read_text())
    groups = [
        g["name"]
        for rule_file in (RECORDING_FILE, ALERTS_FILE)
        if rule_file.name in " ".join(doc["rule_files"])
        for g in yaml.safe_load(rule_file.read_text())["groups"]
    ]
    if len(groups) > 1:
        assert doc.get("group_eval_order") == groups
