"""Step 8: the dlcourse exporter in its own venv and unit, and the hub services it and
Prometheus use (their tokens, roles and snippets)."""

from __future__ import annotations

from dlcourse_installer.checklist.dlcourse_env import ensure_dlcourse
from dlcourse_installer.checklist.step import Context, Step, ensure_part, restart_hub
from dlcourse_installer.machine import releases, systemd, users
from dlcourse_installer.rendered import templates


def ensure_hub_services(ctx: Context) -> bool:
    host, paths = ctx.host, ctx.paths
    if not host.exists(paths.etc):
        host.make_dirs(paths.etc, mode=0o755)
    return ensure_part(ctx, "hub-services")


def ensure_exporter(ctx: Context) -> None:
    host, paths = ctx.host, ctx.paths
    users.ensure_system_user(host, templates.EXPORTER_USER)
    venv = paths.exporter_venv
    if not host.exists(f"{venv}/bin/python"):
        host.run(["/usr/bin/python3", "-m", "venv", venv])
    upgraded = ensure_dlcourse(ctx, "exporter", venv, f"{venv}/bin/python")
    if ensure_hub_services(ctx):
        restart_hub(ctx)
    changed = ensure_part(ctx, "exporter")
    if changed:
        systemd.reload_daemon(host)
    unit = f"{templates.EXPORTER_SERVICE}.service"
    systemd.ensure_running(host, unit, restart_needed=changed or upgraded)


def exporter_release(ctx: Context) -> dict:
    return {"dlcourse": releases.installed(ctx.host, ctx.paths.exporter_venv, "dlcourse")}


STEP = Step("exporter", "dlcourse exporter", ensure_exporter, ("source",),
            parts=("hub-services", "exporter"), installed=exporter_release)  # fmt: skip
