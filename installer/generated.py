"""Every file the installer writes, in one list.

``plan()`` is the registry: each install step writes its own part of it
(``steps.ensure_part``), and ``dlcourse-install render`` writes all of it under a folder for
tests and reviewers. A new generated file is one more entry in ``plan()`` with the part
(the step) that writes it; the steps, render, the dry run and the tests then know it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from dlcourse_installer import templates
from dlcourse_installer.options import Options
from dlcourse_installer.paths import Paths
from dlcourse_installer.ports import Ports


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # on the server
    part: str  # which step writes it, and when (see steps.ensure_part)
    # The text; None for a secret: a fresh random token, made once, never printed or logged.
    content: str | None
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    # A packaged asset copied as it is (rules, dashboards): the dry run names it, and
    # does not print it.
    origin: str = ""

    @property
    def is_secret(self) -> bool:
        return self.content is None


@dataclass(frozen=True)
class Facts:
    """What file contents depend on besides the options: learned from the server by an
    install, fixed (a fresh Ubuntu 24.04 GPU server) for render."""

    python: str  # the Python that resumes the install after the driver's reboot


def plan(paths: Paths, ports: Ports, opts: Options, facts: Facts) -> list[GeneratedFile]:
    """Every file, in the order a fresh install writes them."""
    return [
        *_driver(paths, opts, facts),
        *_course(paths, opts),
        *_hub_services(paths, ports, opts),
        *_prometheus(paths, ports, opts),
        *_alertmanager(paths, ports, opts),
        *_grafana(paths, ports, opts),
    ]


def _driver(paths: Paths, opts: Options, facts: Facts) -> list[GeneratedFile]:
    if opts.no_gpu:
        return []
    files = [GeneratedFile(paths.modprobe_blacklist, "driver", templates.nouveau_blacklist())]
    if opts.reboot:
        unit = templates.resume_unit(paths, facts.python)
        files.append(GeneratedFile(paths.unit(templates.RESUME_UNIT), "resume", unit))
    return files


def _course(paths: Paths, opts: Options) -> list[GeneratedFile]:
    if not opts.roster:
        return []
    snippet = templates.course_snippet(opts.groups())
    return [GeneratedFile(f"{paths.tljh_config_d}/dlcourse-course.py", "course", snippet)]


def _hub_services(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    snippet = templates.hub_services_snippet(paths, ports, grafana_route=opts.grafana_port is None)
    unit = templates.exporter_unit(paths, ports)
    return [
        GeneratedFile(paths.hub_token, "hub-services", None, mode=0o600),
        # Prometheus scrapes the hub's /hub/metrics with this token; nobody else may read it.
        GeneratedFile(paths.metrics_token, "hub-services", None, mode=0o640, group="prometheus"),
        GeneratedFile(f"{paths.tljh_config_d}/dlcourse-services.py", "hub-services", snippet),
        GeneratedFile(paths.unit(f"{templates.EXPORTER_SERVICE}.service"), "exporter", unit),
    ]


def _prometheus(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    rules = [
        GeneratedFile(
            f"{paths.prometheus_rules_dir}/{os.path.basename(src)}", "prometheus", _read(src),
            origin=_relative(src, opts.assets),
        )
        for src in rule_sources(opts.assets)
    ]  # fmt: skip
    config = templates.prometheus_config(paths, ports, [r.path for r in rules])
    args = templates.default_args(templates.prometheus_args(paths, ports))
    node_args = templates.default_args(templates.node_exporter_args(ports))
    return [
        *rules,
        GeneratedFile(paths.prometheus_config, "prometheus", config),
        GeneratedFile(paths.default_file("prometheus"), "prometheus", args),
        GeneratedFile(paths.default_file("prometheus-node-exporter"), "node-exporter", node_args),
    ]


def _alertmanager(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    source = alertmanager_source(opts.assets)
    if source:
        config = GeneratedFile(
            paths.alertmanager_config, "alertmanager", _read(source),
            origin=_relative(source, opts.assets),
        )  # fmt: skip
    else:
        default = templates.default_alertmanager_config()
        config = GeneratedFile(paths.alertmanager_config, "alertmanager", default)
    args = templates.default_args(templates.alertmanager_args(paths, ports))
    return [
        config,
        GeneratedFile(paths.default_file("prometheus-alertmanager"), "alertmanager", args),
    ]


def _grafana(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    prov = paths.grafana_provisioning
    dropin = templates.grafana_dropin(paths, ports, public_port=opts.grafana_port)
    dashboards = [
        GeneratedFile(
            f"{paths.grafana_dashboards_dir}/{os.path.basename(src)}", "grafana", _read(src),
            origin=_relative(src, opts.assets),
        )
        for src in dashboard_sources(opts.assets)
    ]  # fmt: skip
    return [
        GeneratedFile(f"{paths.apt_sources_d}/grafana.list", "grafana-apt",
                      templates.grafana_apt_source(paths)),
        # Made before Grafana's first start: Grafana sets the admin password only then.
        GeneratedFile(paths.grafana_password, "grafana", None, mode=0o600),
        GeneratedFile(paths.unit("grafana-server.service.d/dlcourse.conf"), "grafana", dropin),
        GeneratedFile(f"{prov}/datasources/dlcourse.yml", "grafana",
                      templates.grafana_datasource(ports), mode=0o640, group="grafana"),
        GeneratedFile(f"{prov}/dashboards/dlcourse.yml", "grafana",
                      templates.grafana_dashboard_provider(paths), mode=0o640, group="grafana"),
        *dashboards,
    ]  # fmt: skip


def part(files: list[GeneratedFile], name: str) -> list[GeneratedFile]:
    return [f for f in files if f.part == name]


def digest(files: list[GeneratedFile], parts: tuple[str, ...]) -> str:
    """Changes when any file of these parts would change (a secret by its place only)."""
    h = hashlib.sha256()
    for f in files:
        if f.part in parts:
            h.update(repr((f.path, f.mode, f.owner, f.group, f.content)).encode())
    return h.hexdigest()[:16]


# -- the packaged assets -----------------------------------------------------------------
def _walk(assets: str, folder: str, suffixes: tuple[str, ...]) -> list[str]:
    base = os.path.join(assets, folder)
    found = []
    for dirpath, _, names in os.walk(base):
        found += [os.path.join(dirpath, n) for n in names if n.endswith(suffixes)]
    return sorted(found)


def rule_sources(assets: str) -> list[str]:
    """Every YAML file under prometheus/ with a top-level ``groups:`` (alerts, recordings)."""
    return [f for f in _walk(assets, "prometheus", (".yml", ".yaml")) if _is_rule_file(f)]


def alertmanager_source(assets: str) -> str | None:
    found = [
        f
        for f in _walk(assets, "prometheus", (".yml", ".yaml"))
        if os.path.basename(f).startswith("alertmanager.")
    ]
    return found[0] if found else None


def dashboard_sources(assets: str) -> list[str]:
    return _walk(assets, "grafana", (".json",))


def _is_rule_file(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return any(line.startswith("groups:") for line in f)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _relative(path: str, assets: str) -> str:
    return os.path.relpath(path, assets)
