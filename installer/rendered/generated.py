"""Every file the installer writes, in one list.

``plan()`` is the registry: each install step writes its own part of it (checklist/step.py
``ensure_part``), and ``dlcourse-install render`` writes all of it under a folder for tests
and reviewers. A new generated file is one more entry in ``plan()`` with the part
(the step) that writes it; the steps, render, the dry run and the tests then know it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dlcourse_installer.catalogs import pytorch
from dlcourse_installer.inputs.options import Options
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.probes import kernel_gpu_errors
from dlcourse_installer.rendered import access, assets, grafana_config, staff, students, templates
from dlcourse_installer.rendered.generated_file import GeneratedFile


@dataclass(frozen=True)
class Facts:
    """What file contents depend on besides the options: learned from the server by an
    install, fixed (a fresh Ubuntu 24.04 GPU server) for render."""

    python: str  # the Python that resumes the install after the driver's reboot
    # PyTorch's packages as installed in the users' environment ("torch==2.13.0+cu130"): known
    # once the install has put them there; then pinned (part "pytorch-pins").
    pytorch: tuple[str, ...] = ()
    # prometheus-node-exporter's version, installed or to be installed ("" unknown: a current
    # one); 22.04's 1.3.1 names its web configuration flag differently (templates.py).
    node_exporter: str = ""


def public_url(opts: Options) -> str:
    """The hub's address as browsers know it: --domain (the server's name unless given), with
    its scheme if it has one."""
    return opts.domain if "://" in opts.domain else f"http://{opts.domain}"


def plan(paths: Paths, ports: Ports, opts: Options, facts: Facts) -> list[GeneratedFile]:
    """Every file, in the order a fresh install writes them."""
    return [
        *_driver(paths, opts, facts),
        *_hub_accounts(paths, ports, opts),
        *_user_environment(paths),
        *_pytorch_pins(paths, facts),
        *_course_packages(paths, opts),
        *_course(paths, opts),
        *_hub_services(paths, ports, opts),
        *_prometheus(paths, ports, facts),
        *_alertmanager(paths, ports),
        *_grafana(paths, ports, opts),
    ]


def _driver(paths: Paths, opts: Options, facts: Facts) -> list[GeneratedFile]:
    if opts.no_gpu:
        return []
    files = [
        GeneratedFile(paths.modprobe_blacklist, "driver", templates.nouveau_blacklist()),
        GeneratedFile(f"{paths.apt_conf_d}/51dlcourse-driver-upgrades", "driver",
                      templates.driver_upgrades_by_hand()),
        GeneratedFile(paths.unit(f"{templates.PERSISTENCED}.d/dlcourse.conf"), "driver",
                      templates.persistenced_dropin()),
        GeneratedFile(paths.unit("multi-user.target.d/dlcourse-nvidia-persistenced.conf"),
                      "driver", templates.persistenced_at_boot()),
    ]  # fmt: skip
    if opts.reboot:
        unit = templates.resume_unit(paths, facts.python)
        files.append(GeneratedFile(paths.unit(templates.RESUME_UNIT), "resume", unit))
    return files


def _hub_accounts(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    """Written before TLJH's bootstrap: the admins have a password before the hub listens,
    and the hub listens on dlcourse's port from its first start."""
    passwords = [
        GeneratedFile(paths.hub_password(a), "tljh", None, mode=0o600) for a in opts.admins
    ]
    port = templates.hub_port_snippet(ports)
    return [*passwords, GeneratedFile(f"{paths.tljh_config_d}/dlcourse-hub-port.py", "tljh", port)]


def _user_environment(paths: Paths) -> list[GeneratedFile]:
    settings = templates.resource_usage_settings()
    path = f"{paths.user_jupyter_config_d}/dlcourse-resource-usage.json"
    # Every kernel notes its own CUDA out-of-memory errors for the exporter (issue 23).
    kernel_dir = paths.user_ipython_config_dir
    kernel_extension = Path(kernel_gpu_errors.__file__).read_text(encoding="utf-8")
    # A prebuilt JupyterLab extension is a folder JupyterLab finds by itself (JupyterLab 4
    # docs, "Prebuilt Extensions": <sys.prefix>/share/jupyter/labextensions/<name>).
    lab_extension = [
        GeneratedFile(f"{paths.labextension}/{a.name}", "user-environment", a.text,
                      origin=a.origin)
        for a in assets.labextension()
    ]  # fmt: skip
    return [
        GeneratedFile(path, "user-environment", settings),
        GeneratedFile(
            f"{kernel_dir}/{templates.KERNEL_GPU_ERRORS}.py",
            "user-environment",
            kernel_extension,
            origin="installer/probes/kernel_gpu_errors.py",
        ),
        GeneratedFile(
            f"{kernel_dir}/ipython_kernel_config.py", "user-environment", templates.kernel_config()
        ),
        *lab_extension,
    ]


def _pytorch_pins(paths: Paths, facts: Facts) -> list[GeneratedFile]:
    """The build the installer chose stays, whatever pip or conda is asked to install."""
    if not facts.pytorch:
        return []
    constraints = templates.pytorch_constraints(facts.pytorch)
    pinned = templates.conda_pins(facts.pytorch, pytorch.CONDA_NAMES)
    return [
        # Written before pip.conf names it: a pip.conf naming a missing file stops every pip.
        GeneratedFile(paths.pytorch_constraints, "pytorch-pins", constraints),
        GeneratedFile(paths.user_pip_conf, "pytorch-pins",
                      templates.user_pip_conf(paths.pytorch_constraints)),
        GeneratedFile(paths.user_conda_pinned, "pytorch-pins", pinned),
    ]  # fmt: skip


def _course_packages(paths: Paths, opts: Options) -> list[GeneratedFile]:
    """The lecturer's list, as written: a rebuild next term installs the same."""
    if opts.packages is None:
        return []
    return [GeneratedFile(paths.course_packages, "course-packages", opts.packages.text)]


def _course(paths: Paths, opts: Options) -> list[GeneratedFile]:
    if not opts.roster:
        return []
    snippet = templates.course_snippet(opts.groups())
    # TAs are staff: like the admins, their accounts get a password before the hub knows
    # them, so no student can claim one by logging in first.
    tas = [GeneratedFile(paths.hub_password(ta), "course", None, mode=0o600) for ta in opts.tas]
    return [*tas, GeneratedFile(f"{paths.tljh_config_d}/dlcourse-course.py", "course", snippet)]


def _hub_services(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    snippet = templates.hub_services_snippet(paths)
    grafana_root = grafana_config.root_url(public_url(opts), opts.grafana_port)
    staff_snippet = staff.hub_snippet(
        paths, ports, staff_group=opts.staff_group, grafana_proxied=opts.grafana_port is None,
        grafana_redirect_uri=grafana_config.redirect_uri(grafana_root),
    )  # fmt: skip
    unit = templates.exporter_unit(paths, ports)
    gpus = templates.gpus_snippet(paths, ports, opts.staff_group, opts.roster_gpus)
    gpu_hook = [] if opts.no_gpu else [
        GeneratedFile(f"{paths.tljh_config_d}/dlcourse-gpus.py", "hub-services", gpus)
    ]  # fmt: skip
    return [
        GeneratedFile(paths.hub_token, "hub-services", None, mode=0o600),
        # Prometheus scrapes the hub's /hub/metrics with this token; nobody else may read it.
        GeneratedFile(paths.metrics_token, "hub-services", None, mode=0o640, group="prometheus"),
        *access.hub_files(paths),
        GeneratedFile(f"{paths.tljh_config_d}/dlcourse-services.py", "hub-services", snippet),
        GeneratedFile(f"{paths.tljh_config_d}/dlcourse-staff.py", "hub-services", staff_snippet),
        GeneratedFile(
            f"{paths.tljh_config_d}/dlcourse-students.py",
            "hub-services",
            students.hub_snippet(paths, ports),
        ),  # fmt: skip
        *gpu_hook,
        GeneratedFile(paths.unit(f"{templates.EXPORTER_SERVICE}.service"), "exporter", unit),
    ]


def _prometheus(paths: Paths, ports: Ports, facts: Facts) -> list[GeneratedFile]:
    rules = [
        GeneratedFile(f"{paths.prometheus_rules_dir}/{a.name}", "prometheus", a.text,
                      origin=a.origin)
        for a in assets.rules()
    ]  # fmt: skip
    config = templates.prometheus_config(paths, ports, [r.path for r in rules])
    args = templates.default_args(templates.prometheus_args(paths, ports))
    node_args = templates.default_args(
        templates.node_exporter_args(paths, ports, facts.node_exporter)
    )
    return [
        *access.monitoring_files(paths, ports),
        *rules,
        GeneratedFile(paths.prometheus_config, "prometheus", config),
        GeneratedFile(paths.default_file("prometheus"), "prometheus", args),
        _dropin(paths, "prometheus", "prometheus"),
        GeneratedFile(paths.default_file("prometheus-node-exporter"), "node-exporter", node_args),
        _dropin(paths, "prometheus-node-exporter", "node-exporter"),
    ]


def _dropin(paths: Paths, unit: str, part: str) -> GeneratedFile:
    """A packaged daemon's unit, as dlcourse needs it (templates.packaged_daemon_dropin)."""
    text = templates.packaged_daemon_dropin()
    return GeneratedFile(paths.unit(f"{unit}.service.d/dlcourse.conf"), part, text)


def _alertmanager(paths: Paths, ports: Ports) -> list[GeneratedFile]:
    packaged = assets.alertmanager_config()
    if packaged:
        text, origin = packaged.text, packaged.origin
    else:
        text, origin = templates.default_alertmanager_config(), ""
    # Receivers may hold SMTP or webhook credentials: Alertmanager's account reads it, no one else.
    config = GeneratedFile(paths.alertmanager_config, "alertmanager", text, mode=0o640,
                           group="prometheus", origin=origin)  # fmt: skip
    args = templates.default_args(templates.alertmanager_args(paths, ports))
    return [
        config,
        GeneratedFile(paths.default_file("prometheus-alertmanager"), "alertmanager", args),
        _dropin(paths, "prometheus-alertmanager", "alertmanager"),
    ]


def _grafana(paths: Paths, ports: Ports, opts: Options) -> list[GeneratedFile]:
    ini = grafana_config.grafana_ini(
        paths, ports, public_url=public_url(opts), grafana_port=opts.grafana_port,
        staff_group=opts.staff_group,
    )  # fmt: skip
    # The repository's provisioning, as docker-compose.yml uses it, with this install's
    # addresses, folders and Grafana's password file in place of the ones it names.
    here = {
        address: ports.address(name) for name, address in grafana_config.COMPOSE_ADDRESSES.items()
    }
    here[Paths().grafana_dashboards_dir] = paths.grafana_dashboards_dir
    here[grafana_config.COMPOSE_PASSWORD_FILE] = paths.password("grafana")
    provisioning = []
    for a in assets.grafana_provisioning():
        text = _with(a.text, here)
        origin = a.origin if text == a.text else f"{a.origin}, with this install's addresses"
        path = f"{paths.grafana_provisioning}/{a.name}"
        provisioning.append(
            GeneratedFile(path, "grafana", text, mode=0o640, group="grafana", origin=origin)
        )
    dashboards = [
        GeneratedFile(f"{paths.grafana_dashboards_dir}/{a.name}", "grafana", a.text,
                      origin=a.origin)
        for a in assets.dashboards()
    ]  # fmt: skip
    return [
        GeneratedFile(f"{paths.apt_sources_d}/grafana.list", "grafana-apt",
                      templates.grafana_apt_source(paths)),
        # Made before Grafana's first start: Grafana sets the admin password only then.
        GeneratedFile(paths.grafana_password, "grafana", None, mode=0o600),
        GeneratedFile(paths.grafana_ini, "grafana", ini, mode=0o640, group="grafana"),
        GeneratedFile(paths.unit("grafana-server.service.d/dlcourse.conf"), "grafana",
                      grafana_config.dropin(paths)),
        *provisioning,
        *dashboards,
    ]  # fmt: skip


def _with(text: str, replacements: dict[str, str]) -> str:
    for default, value in replacements.items():
        text = text.replace(default, value)
    return text


def part(files: list[GeneratedFile], name: str) -> list[GeneratedFile]:
    return [f for f in files if f.part == name]


def digest(files: list[GeneratedFile], parts: tuple[str, ...]) -> str:
    """Changes when any file of these parts would change (a secret by its place only)."""
    h = hashlib.sha256()
    for f in files:
        if f.part in parts:
            h.update(repr((f.path, f.mode, f.owner, f.group, f.content, f.derived)).encode())
    return h.hexdigest()[:16]
