"""The generated dashboards: up to date, lint-clean, linked, and their queries valid PromQL."""

from __future__ import annotations

import copy
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dlcourse_dashboards.queries import (
    DEFAULT_VALUES,
    UnknownVariable,
    iter_queries,
    load_dashboards,
    substitute,
)
from grafana_lint import lint

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = load_dashboards()
EXPECTED_FILES = {
    "class-overview.json",
    "student-detail.json",
    "gpu-health.json",
    "hub-health.json",
}


def test_all_dashboards_are_committed() -> None:
    assert set(DASHBOARDS) == EXPECTED_FILES


@pytest.mark.live
def test_committed_json_is_what_the_generator_writes(tmp_path) -> None:
    subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path)], check=True
    )
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")}
    committed = {
        p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*.json")
    }
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"grafana/dashboards is stale: {stale}; run `make dashboards`"


@pytest.mark.live
def test_check_mode_reports_a_stale_file(tmp_path) -> None:
    subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path)], check=True
    )
    (tmp_path / "gpu-health.json").write_text("{}\n")
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "gpu-health.json" in result.stderr and "make dashboards" in result.stderr


def test_sdk_build_matches_the_grafana_image() -> None:
    """The SDK is pinned to the build for the Grafana version docker-compose.yml runs."""
    sdk = importlib.metadata.version("grafana-foundation-sdk")
    pinned = re.search(r"grafana-foundation-sdk==([^\"']+)", (REPO / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml must pin grafana-foundation-sdk to an exact build"
    assert sdk == pinned.group(1)
    image = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"][
        "image"
    ]
    grafana_version = image.rsplit(":", 1)[1]
    sdk_grafana = sdk.split("!", 1)[1]
    assert grafana_version.split(".")[:2] == sdk_grafana.split(".")[:2], (image, sdk)


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_dashboard_is_lint_clean(name: str) -> None:
    assert lint(DASHBOARDS[name]) == []


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (
            lambda d: d["panels"][1]["targets"][0].update(datasource={"uid": "P1809F7CD0C75ACF3"}),
            "panel-datasource-rule",
        ),
        (lambda d: d.update(__inputs=[{"name": "DS_PROMETHEUS"}]), "panel-datasource-rule"),
        (lambda d: d["panels"][1]["fieldConfig"]["defaults"].pop("unit"), "panel-units-rule"),
        (
            lambda d: d["panels"][1]["fieldConfig"]["defaults"].update(unit="furlongs"),
            "panel-units-rule",
        ),
        (
            lambda d: d["panels"][1]["targets"][0].update(expr="rate(x_total[5m])"),
            "target-rate-interval-rule",
        ),
        (
            lambda d: d["panels"][1]["targets"][0].update(expr="sum(increase(x_total[1d]))"),
            "target-rate-interval-rule",
        ),
        (lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "panel-id-rule"),
        (lambda d: d["panels"][1].update(title=" "), "panel-title-description-rule"),
        (lambda d: d.pop("uid"), "uid-rule"),
        (lambda d: d["templating"]["list"].pop(0), "template-datasource-rule"),
        (lambda d: d["templating"]["list"].pop(2), "template-instance-rule"),
    ],
)
def test_lint_catches(mutate, rule: str) -> None:
    dashboard = copy.deepcopy(DASHBOARDS["class-overview.json"])
    mutate(dashboard)
    assert any(problem.startswith(rule + ":") for problem in lint(dashboard)), lint(dashboard)


def test_dashboards_link_to_each_other() -> None:
    uids = {d["uid"] for d in DASHBOARDS.values()}
    for dashboard in DASHBOARDS.values():
        assert "dlcourse" in dashboard["tags"]
        (link,) = dashboard["links"]
        assert link["type"] == "dashboards" and link["tags"] == ["dlcourse"]
        assert link["includeVars"] and link["keepTime"]
        for url in re.findall(r'"url": "/d/([\w-]+)/', str(dashboard).replace("'", '"')):
            assert url in uids, f"{dashboard['title']} links to unknown dashboard {url}"


def test_every_variable_in_a_query_is_defined() -> None:
    builtins = {name for name in DEFAULT_VALUES if name.startswith("__")}
    for dashboard in DASHBOARDS.values():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | builtins
        values = {name: "x" for name in defined}
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                substitute(target["expr"], values)  # raises UnknownVariable


def test_substitute_fills_and_refuses() -> None:
    assert substitute('a{user="$user"}[${__range}]', {"user": "bo", "__range": "2h"}) == (
        'a{user="bo"}[2h]'
    )
    with pytest.raises(UnknownVariable):
        substitute('a{gpu=~"$gpu"}', {})


def test_iter_queries_covers_panels_and_variables() -> None:
    queries = list(iter_queries({"user": "alice"}))
    wheres = {(d, w) for d, w, _ in queries}
    assert ("Student detail", "variable $user") in wheres
    assert ("Class overview", "Students on GPUs") in wheres
    assert all("$" not in expr for _, _, expr in queries)
    assert any('user="alice"' in expr for _, _, expr in queries)
