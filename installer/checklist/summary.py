"""What the install prints when it is done: where everything is."""

from __future__ import annotations

from urllib.parse import urlsplit

from dlcourse_installer.checklist.step import Context
from dlcourse_installer.rendered import generated, grafana_config, staff


def summary(ctx: Context) -> list[str]:
    """Where everything is once installed: URLs, and the file of each credential (never its
    value)."""
    paths, opts, ports = ctx.paths, ctx.opts, ctx.ports
    hub = generated.public_url(opts)
    admins = "; ".join(f"admin {a}: password in {paths.hub_password(a)}" for a in opts.admins)
    return [
        f"JupyterHub:   {hub}/  ({admins})",
        f"Staff only (hub admins and the group {opts.staff_group!r}), through the hub's login:",
        f"  class status {hub}/services/{staff.STATUS_SERVICE}/",
        f"  Grafana      {grafana_config.root_url(hub, opts.grafana_port)}",
        f"Prometheus:   http://{ports.address('prometheus')}/ and Alertmanager "
        f"http://{ports.address('alertmanager')}/, on the server only, user instructor "
        # Any free port on the instructor's side: below 1024 there, ssh would need root.
        f"(ssh -L 9090:{ports.address('prometheus')} {urlsplit(hub).hostname}, then "
        "http://localhost:9090/; "
        f"as root: curl --netrc-file {paths.instructor_netrc}, amtool)",
        f"Credentials:  in {paths.etc} and {paths.monitoring_auth}, each readable by root and "
        "the one service it is for (docs/security.md)",
        *(packages_summary(ctx)[:1] if opts.packages else []),
        f"Install log:  {paths.log_file}",
    ]


def packages_summary(ctx: Context) -> list[str]:
    paths = ctx.paths
    return [
        f"Packages:     {paths.course_packages} (`dlcourse-install status` shows what is "
        "installed of it)",
        f"Rollback:     the snapshots in {paths.package_snapshots}/ (`pip install -r` one)",
        f"Install log:  {paths.log_file}",
    ]
