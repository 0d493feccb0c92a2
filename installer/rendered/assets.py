"""The packaged files the installer copies: alert rules, Alertmanager's configuration,
dashboards, the students' JupyterLab extension.

They live in the repository's prometheus/, grafana/ and labextension/ folders (owned by their
areas) and are package data of the dlcourse wheel under the import names
``dlcourse_prometheus``, ``dlcourse_grafana`` and ``dlcourse_labextension`` (pyproject.toml),
so a checkout, an editable install and a wheel installed by ``curl ... | sudo python3 -`` all
find them the same way.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

PROMETHEUS = "dlcourse_prometheus"
GRAFANA = "dlcourse_grafana"
LABEXTENSION = "dlcourse_labextension"


@dataclass(frozen=True)
class Asset:
    name: str  # file name, the same on the server
    origin: str  # where it comes from, for the dry run: prometheus/rules/x.yml
    text: str


def package_folder(package: str) -> Path | None:
    """The folder of a data package (no __init__.py: a namespace package).

    importlib.resources cannot read namespace packages under setuptools' editable finder,
    so this takes the real folder from the import spec; a checkout that was never
    installed (bootstrap.py --dry-run) has it beside installer/.
    """
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    beside = Path(__file__).resolve().parents[2] / package.removeprefix("dlcourse_")
    return beside if beside.is_dir() else None


def _files(package: str, folder: str, suffix: str) -> list[Asset]:
    base = package_folder(package)
    if base is None or not (base / folder).is_dir():
        return []
    top = package.removeprefix("dlcourse_")
    return [
        Asset(f.name, f"{top}/{folder}/{f.name}", f.read_text(encoding="utf-8"))
        for f in sorted((base / folder).iterdir())
        if f.name.endswith(suffix)
    ]


def rules() -> list[Asset]:
    """Alert and recording rules: every YAML file of prometheus/rules/ with ``groups:``."""
    found = _files(PROMETHEUS, "rules", ".yml")
    return [a for a in found if any(line.startswith("groups:") for line in a.text.splitlines())]


def alertmanager_config() -> Asset | None:
    base = package_folder(PROMETHEUS)
    if base is None or not (base / "alertmanager.yml").is_file():
        return None
    text = (base / "alertmanager.yml").read_text(encoding="utf-8")
    return Asset("alertmanager.yml", "prometheus/alertmanager.yml", text)


def dashboards() -> list[Asset]:
    return _files(GRAFANA, "dashboards", ".json")


def grafana_provisioning() -> list[Asset]:
    """Datasources and the dashboard provider, shared with docker-compose.yml; the name keeps
    the kind: ``datasources/dlcourse.yml``."""
    found = []
    for kind in ("datasources", "dashboards"):
        for a in _files(GRAFANA, f"provisioning/{kind}", ".yml"):
            found.append(Asset(f"{kind}/{a.name}", a.origin, a.text))
    return found


def labextension() -> list[Asset]:
    """The JupyterLab extension as built (labextension/prebuilt: ``make labextension``); the
    name is the path inside its folder, ``static/remoteEntry.<hash>.js``."""
    base = package_folder(LABEXTENSION)
    built = base / "prebuilt" if base is not None else None
    if built is None or not (built / "package.json").is_file():
        return []
    return [
        Asset(str(f.relative_to(built)), f"labextension/prebuilt/{f.relative_to(built)}",
              f.read_text(encoding="utf-8"))
        for f in sorted(built.rglob("*"))
        if f.is_file()
    ]  # fmt: skip
