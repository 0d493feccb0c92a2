"""Fixtures of the exporter's end-to-end tests."""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

import pytest

from dlcourse_testing.exporter import RunningExporter

# The sleeper's processes run as this account with JUPYTERHUB_USER set, as a spawner that
# runs every user's server under one account would start them.
FAST = ["--collection.interval=0.3", f"--user.spawner-account={getpass.getuser()}"]


@pytest.fixture
def sleeper():
    """Starts real long-lived processes to stand as GPU processes; kills them afterwards."""
    started: list[subprocess.Popen] = []

    def start(user: str | None = None, hub_user: str | None = None) -> int:
        env = {"PATH": "/usr/bin:/bin"}
        if hub_user:
            env["JUPYTERHUB_USER"] = hub_user
        process = subprocess.Popen(["sleep", "600"], env=env, user=user)
        started.append(process)
        return process.pid

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def run_exporter(tmp_path, fake_nvml_dir, scenario_path):
    running: list[RunningExporter] = []

    def start(*args: str, nvml_dir: Path | None = None) -> RunningExporter:
        exporter = RunningExporter(
            [*FAST, *args],
            nvml_dir=nvml_dir or fake_nvml_dir,
            scenario=scenario_path,
            log_path=tmp_path / f"exporter-{len(running)}.log",
        )
        running.append(exporter)
        return exporter

    yield start
    for exporter in running:
        exporter.stop()
