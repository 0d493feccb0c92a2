"""Fixtures for the Prometheus/Alertmanager tests: the real tools, skipped when absent."""

from __future__ import annotations

import pytest
from alerting_stack import AlertingStack, find_tool


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


@pytest.fixture
def alerting_stack(tmp_path):
    """A factory: alerting_stack(targets={job: [host:port]}, overrides=...) -> AlertingStack.

    Real Prometheus and Alertmanager on free 127.0.0.1 ports, stopped after the test.
    """
    require("prometheus")
    require("prometheus-alertmanager", "alertmanager")
    stacks: list[AlertingStack] = []

    def start(targets: dict[str, list[str]], **kwargs) -> AlertingStack:
        workdir = tmp_path / f"stack{len(stacks)}"
        workdir.mkdir()
        stack = AlertingStack(workdir, targets, **kwargs).__enter__()
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.close()
