"""Step 4: The Littlest JupyterHub, by its own bootstrap, with the admins' passwords set and
dlcourse as its plugin before the hub first listens."""

from __future__ import annotations

from dlcourse_installer.checklist.dlcourse_env import ensure_dlcourse, record_dlcourse
from dlcourse_installer.checklist.step import Context, Step, ensure_part, restart_hub
from dlcourse_installer.machine import releases, tljh
from dlcourse_installer.machine.download import download

TLJH_BOOTSTRAP_URL = (
    "https://raw.githubusercontent.com/jupyterhub/the-littlest-jupyterhub/{version}"
    "/bootstrap/bootstrap.py"
)


def ensure_tljh(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    # The admins' passwords exist before TLJH first starts the hub: the plugin writes them
    # into TLJH's password store from these files (hub_passwords.py), so the hub never
    # listens with an admin account whoever comes first could claim.
    if not host.exists(paths.hub_passwords_dir):
        host.make_dirs(paths.hub_passwords_dir, mode=0o700)
    # The hub's port (dlcourse-hub-port.py) is in place before TLJH first starts the hub.
    # TLJH's folders are root's alone (tljh/installer.py ensure_config_yaml makes both 0700,
    # and config.yaml may hold secrets); made here first, they must be so from the start.
    for folder in (paths.tljh_config_dir, paths.tljh_config_d):
        if not host.exists(folder):
            host.make_dirs(folder, mode=0o700)
    changed = ensure_part(ctx, "tljh")
    release = tljh.release(host, paths)
    fresh = release is None
    if release != opts.tljh_version:
        if not fresh:  # TLJH's own way to upgrade: its bootstrap again, with the new version
            ctx.note(f"TLJH {release} is installed; its bootstrap installs {opts.tljh_version}")
        bootstrap_tljh(ctx)
    if fresh:  # the bootstrap installed --source into the new hub environment (--plugin)
        record_dlcourse(ctx, "hub", paths.hub_env)
    elif ensure_dlcourse(ctx, "hub", paths.hub_env, f"{paths.hub_env}/bin/python3") or changed:
        restart_hub(ctx)  # the hub imports the plugin and the GPU hook, and takes its port
    if not (fresh and opts.dry_run) and tljh.passwords_missing(host, paths):
        tljh.seed_passwords(host, paths)
    for admin in opts.admins:
        ctx.note(f"hub admin {admin}: password in {paths.hub_password(admin)}")


def bootstrap_tljh(ctx: Context) -> None:
    """TLJH's bootstrap, pinned, with the admins and dlcourse as its plugin: it installs TLJH,
    or upgrades it to the version given (bootstrap/bootstrap.py, TLJH 2.0.0: `pip install
    --upgrade` of that tag, then its installer, which installs --plugin with --upgrade)."""
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    bootstrap = f"{paths.cache}/tljh-bootstrap-{opts.tljh_version}.py"
    if not host.exists(bootstrap):
        host.make_dirs(paths.cache)
        download(host, TLJH_BOOTSTRAP_URL.format(version=opts.tljh_version), bootstrap)
    admins = [a for admin in opts.admins for a in ("--admin", admin)]
    host.run(
        ["/usr/bin/python3", bootstrap, "--version", opts.tljh_version, *admins,
         "--plugin", opts.source.spec],
        env={"TLJH_INSTALL_PREFIX": paths.tljh_prefix, "DLCOURSE_ETC": paths.etc},
    )  # fmt: skip


def hub_releases(ctx: Context) -> dict:
    return {
        "tljh": tljh.release(ctx.host, ctx.paths),
        "dlcourse": releases.installed(ctx.host, ctx.paths.hub_env, "dlcourse"),
    }


STEP = Step("tljh", "The Littlest JupyterHub", ensure_tljh, ("tljh_version", "admins", "source"),
            parts=("tljh",), installed=hub_releases)  # fmt: skip
