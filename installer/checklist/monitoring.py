"""Step 9: Prometheus, Alertmanager, node_exporter and Grafana from Ubuntu's and Grafana's
packages, with dlcourse's configuration, rules and dashboards, each behind a credential."""

from __future__ import annotations

from dataclasses import replace

from dlcourse_installer.checklist.step import Context, Step, ensure_owner, ensure_part
from dlcourse_installer.machine import apt, systemd
from dlcourse_installer.machine.download import download
from dlcourse_installer.rendered import assets, generated

NODE_EXPORTER_PACKAGE = "prometheus-node-exporter"
MONITORING_PACKAGES = ["prometheus", "prometheus-alertmanager", NODE_EXPORTER_PACKAGE]
GRAFANA_KEY_URL = "https://apt.grafana.com/gpg.key"


def ensure_grafana(ctx: Context) -> bool:
    host, paths = ctx.host, ctx.paths
    key = f"{paths.apt_keyrings}/grafana.asc"
    if not host.exists(key):
        host.make_dirs(paths.apt_keyrings)
        download(host, GRAFANA_KEY_URL, key)
    if ensure_part(ctx, "grafana-apt"):
        host.apt_lists_fresh = False  # a new source
    apt.ensure_packages(host, ["grafana"])
    # Grafana's secrets were written root-only before its account existed.
    for f in ctx.files:
        if f.group == "grafana" and f.part != "grafana":
            ensure_owner(host, f)
    ctx.note(f"{len(assets.dashboards())} dashboards from grafana/dashboards/")
    changed = ensure_part(ctx, "grafana")
    if changed:
        systemd.reload_daemon(host)  # the drop-in
    return changed


def ensure_monitoring(ctx: Context) -> None:
    host = ctx.host
    apt.ensure_packages(host, MONITORING_PACKAGES)
    # Its flags depend on its version (22.04's 1.3.1: templates.node_exporter_args).
    installed = apt.version(host, NODE_EXPORTER_PACKAGE) or ""
    if installed != ctx.facts.node_exporter:
        ctx.learned(replace(ctx.facts, node_exporter=installed))
    # The hub's metrics token was written root-only before Prometheus's account existed.
    for f in generated.part(ctx.files, "hub-services"):
        ensure_owner(host, f)
    ctx.note(f"{len(assets.rules())} rule files from prometheus/rules/")
    changed = {
        unit: ensure_part(ctx, part)
        for unit, part in (
            ("prometheus", "prometheus"),
            ("prometheus-alertmanager", "alertmanager"),
            ("prometheus-node-exporter", "node-exporter"),
        )
    }
    if any(changed.values()):
        systemd.reload_daemon(host)  # the drop-ins (templates.packaged_daemon_dropin)
    changed["grafana-server"] = ensure_grafana(ctx)
    for unit, restart_needed in changed.items():
        systemd.ensure_running(host, unit, restart_needed=restart_needed)


STEP = Step(
    "monitoring", "Monitoring stack", ensure_monitoring,
    parts=("prometheus", "alertmanager", "node-exporter", "grafana-apt", "grafana"),
)  # fmt: skip
