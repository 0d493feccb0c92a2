"""Fixtures for the Prometheus/Alertmanager tests: the real tools, skipped when absent."""

from __future__ import annotations

import pytest

from dlcourse_testing.alerting import find_tool


def require(*names: str) -> str:
    path = find_tool(*names)
    if path is None:
        pytest.skip(f"{names[0]} is not installed (scripts/setup-system.sh installs it)")
    return path


@pytest.fixture
def promtool() -> str:
    return require("promtool")


@pytest.fixture
def amtool() -> str:
    return require("amtool")


@pytest.fixture
def node_exporter_bin() -> str:
    return require("prometheus-node-exporter", "node_exporter")
