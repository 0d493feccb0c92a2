"""Run the chart through a real helm binary (build/helm/helm, `make helm`) and read its output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "dlcourse"
SHARING_VALUES = REPO / "deploy" / "helm" / "examples" / "gpu-sharing-values.yaml"
HELM = REPO / "build" / "helm" / "helm"
NAMESPACE = "jhub"
RELEASE = "dlcourse"
# The job names prometheus/prometheus.yml scrapes with, which the shipped files select.
SINGLE_SERVER_JOBS = ("--set", "jobs.node=node")


class Helm:
    """helm with its caches and configuration in a scratch folder, never the user's."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120
        )

    def template(self, *args: str) -> list[dict]:
        """Every object `helm template` renders for the chart with these extra arguments."""
        result = self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(objects: list[dict], kind: str, name_suffix: str = "") -> dict:
    """The one object of `kind` whose name ends with `name_suffix`."""
    [found] = [
        o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
    ]
    return found


def container(workload: dict) -> dict:
    [exporter] = workload["spec"]["template"]["spec"]["containers"]
    return exporter
